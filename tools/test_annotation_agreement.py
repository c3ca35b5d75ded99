"""The annotation-agreement tool (run by `make test` with the trainer's tests): Cohen's kappa on
known cases, and the gold actions of every conversation follow from its gold labels by the ladder
that the tool (and tools/replay_judgement.py) replays, so that a second reading's labels are
turned into actions by the same rules as the gold's."""
import os, sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import annotation_agreement as agreement  # noqa: E402


def test_kappa_is_one_for_identical_readings_zero_for_chance_and_negative_for_opposites():
    assert agreement.kappa([(True, True), (False, False), (True, True), (False, False)]) == 1.0
    assert agreement.kappa([(True, True), (True, False), (False, True), (False, False)]) == 0.0
    assert agreement.kappa([(True, False), (False, True)]) == -1.0
    assert agreement.kappa([(False, False), (False, False)]) is None  # no variation: undefined
    assert agreement.kappa([]) is None


def test_every_gold_action_is_what_the_ladder_gives_from_the_gold_labels():
    for split in ("dev", "test"):
        gold = agreement.gold_turns(split)
        keys = list(gold)
        assert len(keys) > 500, split
        replayed = agreement.actions(keys, lambda k: gold[k][1])
        wrong = [k for k in keys if replayed[k] != gold[k][2]]
        assert wrong == [], f"{split}: gold actions the ladder does not give: {wrong[:5]}"


def test_the_second_reading_covers_every_customer_turn_once():
    for split in ("dev", "test"):
        gold, second = agreement.gold_turns(split), agreement.second_turns(split)
        assert set(second) == set(gold), split
