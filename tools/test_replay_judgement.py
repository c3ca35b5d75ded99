"""tools/replay_judgement.py `missed`, `false-flags`, `oracle` and `report`'s label figures (run by
`make test` with the trainer's tests): `missed` puts right exactly the misses of the labels it is
given, and nothing else; `false-flags` clears exactly their false flags; `oracle`'s `gold_flags`
makes the given labels' flags exactly gold, false flags included. (That the
replayed ladder is the one the gold actions follow is tested in test_annotation_agreement.py.)"""
import os, sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import replay_judgement as replay  # noqa: E402

HEAD = {"thresholds": {label: 0.5 for label in replay.LABELS}}


def turn(conversation, index, scores, gold_labels, gold_action):
    full = {label: 0.0 for label in replay.LABELS}
    full.update(scores)
    return {"kind": "turn", "conversation": conversation, "index": index, "split": "dev", "lang": "en",
            "thresholds_language": "en", "scores": full, "gold": {"labels": gold_labels, "action": gold_action}}


def escalation():
    """A dig the model misses on the first turn, then two insults it catches: every rung after
    the miss comes one step late."""
    return [
        turn("c1", 0, {"frustration": 0.9, "rudeness": 0.1}, ["frustration", "rudeness"], "LET_IT_PASS"),
        turn("c1", 1, {"rudeness": 0.9, "insult": 0.9}, ["rudeness", "insult"], "STAY_CALM"),
        turn("c1", 2, {"rudeness": 0.9, "insult": 0.9}, ["rudeness", "insult"], "SET_BOUNDARY"),
    ]


def test_one_missed_rudeness_makes_every_later_rung_late_and_putting_it_right_mends_them():
    figures = replay.put_right(escalation(), HEAD, ["rudeness"])
    assert figures["as served"]["conversations"] == 0.0
    assert figures["rudeness misses put right"]["conversations"] == 100.0
    assert figures["rudeness misses put right"]["boundary_calls"] == 1


def test_putting_right_another_label_leaves_the_rudeness_miss_alone():
    figures = replay.put_right(escalation(), HEAD, ["threat"])
    assert figures["threat misses put right"] == figures["as served"]


def test_a_false_flag_is_not_put_right():
    rows = [turn("c2", 0, {"rudeness": 0.9}, ["frustration"], "ACKNOWLEDGE")]
    figures = replay.put_right(rows, HEAD, ["rudeness"])
    assert figures["rudeness misses put right"]["false_alarms"] == 100.0


def test_oracle_puts_right_false_flags_as_well_as_misses():
    rows = escalation() + [turn("c2", 0, {"rudeness": 0.9}, ["frustration"], "ACKNOWLEDGE")]
    assert replay.gold_flags(rows, HEAD, ["rudeness"])["conversations"] == 75.0  # c2's frustration is still missed
    assert replay.gold_flags(rows, HEAD, ["rudeness", "frustration"])["conversations"] == 100.0
    assert replay.gold_flags(rows, HEAD, ["rudeness"])["false_alarms"] == 0.0


def test_oracle_leaves_the_other_labels_and_the_suite_alone():
    case = {"kind": "case", "split": "dev", "lang": "en", "thresholds_language": "en",
            "scores": {label: 0.0 for label in replay.LABELS}, "must": ["frustration"], "must_not": [], "actions": ["ACKNOWLEDGE"]}
    rows = escalation() + [case]
    figures = replay.gold_flags(rows, HEAD, ["threat"])  # threat is neither scored nor gold here
    assert figures == replay.evaluate(rows, lambda r: HEAD["thresholds"])
    assert replay.gold_flags(rows, HEAD, ["frustration"])["suite_labels"] == 0.0


def test_oracle_leaves_a_turn_without_gold_as_served():
    rows = [turn("c3", 0, {"rudeness": 0.9}, [], "NONE"), turn("c3", 1, {"rudeness": 0.9}, ["rudeness"], "STAY_CALM")]
    rows[0]["gold"] = None
    # The first turn's served rudeness still counts on the ladder: the second is the second abusive turn.
    assert replay.gold_flags(rows, HEAD, ["rudeness"])["conversations"] == 100.0


def test_cue_gap_counts_calm_flags_and_recall_apart_for_texts_with_and_without_a_cue():
    rows = [turn("c1", 0, {"frustration": 0.9}, [], "NONE"),                 # calm, flagged, a cue
            turn("c1", 1, {"frustration": 0.1}, [], "NONE"),                 # calm, not flagged, no cue
            turn("c1", 2, {"frustration": 0.9}, ["frustration"], "ACKNOWLEDGE"),  # a hit, a cue
            {**turn("c1", 3, {}, [], "NONE"), "gold": None}]                 # no gold: left out
    case = {"kind": "case", "split": "dev", "lang": "en", "thresholds_language": "en", "must": [], "must_not": ["frustration"],
            "scores": {label: (0.7 if label == "frustration" else 0.0) for label in replay.LABELS}}
    has_cue = lambda r: r.get("index") in (0, 2)
    counts = replay.cue_gap_counts(rows + [case], HEAD, "frustration", has_cue)
    assert counts == {("turn", True): [1, 1, 1, 1], ("turn", False): [1, 0, 0, 0], ("case", False): [1, 1, 0, 0]}


def test_label_figures_count_each_labels_false_flags_against_the_gold():
    rows = escalation() + [turn("c2", 0, {"rudeness": 0.9, "profanity": 0.9}, ["frustration"], "ACKNOWLEDGE")]
    figures = replay.label_figures(rows, lambda r: HEAD["thresholds"])
    # AUC: two of the three digs tie with c2's false 0.9 (half a pair each), the third scores below it.
    assert figures["rudeness"] == {"gold": 3, "flagged": 3, "flagged_and_gold": 2, "precision": 0.667, "recall": 0.667, "auc": 0.333}
    assert figures["profanity"] == {"gold": 0, "flagged": 1, "flagged_and_gold": 0, "precision": 0.0, "recall": None, "auc": None}
    assert figures["frustration"]["recall"] == 0.5  # c2's frustration is scored 0


def test_clearing_false_flags_leaves_the_misses_alone():
    rows = escalation() + [turn("c2", 0, {"rudeness": 0.9}, ["frustration"], "ACKNOWLEDGE")]
    figures = replay.cleared(rows, HEAD, ["rudeness"])["rudeness false flags cleared"]
    assert figures["false_alarms"] == 0.0  # c2's false rudeness is gone
    assert figures["conversations"] == 0.0  # c1's missed dig still makes every rung late; c2's frustration is scored 0


def test_auc_counts_ties_as_half():
    assert replay.auc([0.9, 0.5], [0.5, 0.1]) == 0.875
    assert replay.auc([0.9], []) is None
