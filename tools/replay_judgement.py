#!/usr/bin/env python3
"""Replay `calmline eval-judgement` from saved scores, to try thresholds without re-embedding.

    python3 tools/replay_judgement.py dump MODELS SCORES.jsonl [--base models/base]
        # every behaviour-suite case and conversation customer turn through `calmline analyze
        # --jsonl --precision f32` (the case's language, or the conversation's locale, as hint)
    python3 tools/replay_judgement.py report SCORES.jsonl HEAD.json [--split test]
        # suite labels/actions, conversation accuracy, SET_BOUNDARY+ precision and false alarms
        # with HEAD.json's thresholds, and each label's precision and recall on the conversation
        # turns (and its scores' AUC there): the same figures eval-judgement gives
    python3 tools/replay_judgement.py ceiling SCORES.jsonl HEAD.json [--split test]
        # one cut per label chosen on the split itself (coordinate ascent): an upper bound on
        # what any single set of thresholds could give this encoder, to compare encoders
        # without their calibration in the way. Not a method: it fits the split it reports.
    python3 tools/replay_judgement.py fit-dev SCORES.jsonl HEAD.json
        # one pooled cut per label chosen on the dev split (suite labels + actions + conversations
        # + 1/4 boundary precision - 2 x false alarms; languages' own cuts kept), then dev and
        # test with HEAD.json's cuts and with these (model card, experiment 36: not adopted)
    python3 tools/replay_judgement.py missed SCORES.jsonl HEAD.json [--split test] [--labels rudeness]
        # the figures with HEAD.json's cuts, then again with every gold label of --labels that a
        # conversation turn misses flagged after all: how much of the ladder's error one label's
        # misses cause (a missed rudeness puts every later rung one step late). Not a method either.
    python3 tools/replay_judgement.py false-flags SCORES.jsonl HEAD.json [--split test] [--labels insult]
        # the same with every false flag of --labels on a conversation turn cleared instead (its
        # misses left alone): how much of the boundary calls and false alarms one label's false
        # flags cause (model card, experiment 77: insult). Not a method either.
    python3 tools/replay_judgement.py oracle SCORES.jsonl HEAD.json [--split test]
        # the figures with one label's (or one group's) flags on conversation turns made exactly
        # gold, misses and false flags both: which label's errors cost the most accuracy, boundary
        # precision or false alarms (experiment 64). Not a method either.
    python3 tools/replay_judgement.py cue-gap SCORES.jsonl HEAD.json [--label frustration] [--before-round 33]
        # the label's false flags on calm conversation turns and suite cases (the label not gold /
        # in must_not) that carry one of their language's cue words (tools/label_cues.py, from the
        # training rounds below --before-round) or, for frustration, a digit, against those that do
        # not; and the recall on each side (model card, experiment 76)

The ladder below is src/domain/policy/mod.rs `customer_turn` with its settings read from
models/policy.toml's [ladder] (the gold actions follow the same rules, data/conversations/README.md).
Severity only matters there through boundary_severity = "high", which needs a harm flag, and harm
goes to INVOLVE_MANAGER first, so it is left out.
"""
import argparse, json, os, subprocess, sys, tomllib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LABELS = ["frustration", "rudeness", "insult", "profanity", "threat", "identity_attack", "sexual_harassment"]
with open(os.path.join(ROOT, "models/policy.toml"), "rb") as f:
    LADDER = tomllib.load(f)["ladder"]
ABUSE, HARM, FRUSTRATION = set(LADDER["abuse"]), set(LADDER["harm"]), set(LADDER["frustration"])
# A turn whose gold has none of these is "without abuse" for the false-alarm rate (src/train/judgement.rs ABUSE).
ABUSIVE_GOLD = {"rudeness", "insult", "threat", "identity_attack", "sexual_harassment"}
ORDER = ["NONE", "ACKNOWLEDGE", "LET_IT_PASS", "STAY_CALM", "SET_BOUNDARY", "INVOLVE_MANAGER", "END_CONTACT"]


def read_jsonl(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def items():
    """(key, text, lang hint, record) for every suite case and every gold customer turn."""
    for name in sorted(os.listdir(os.path.join(ROOT, "data/behaviour"))):
        if name.endswith(".jsonl"):
            for case in read_jsonl(os.path.join(ROOT, "data/behaviour", name)):
                yield "case:" + case["id"], case["text"], case["lang"], {"kind": "case", **{k: case[k] for k in ("split", "lang", "functionality", "must", "must_not", "actions")}}
    for name in sorted(os.listdir(os.path.join(ROOT, "data/conversations"))):
        if name.endswith(".jsonl"):
            for conv in read_jsonl(os.path.join(ROOT, "data/conversations", name)):
                customer = [t for t in conv["turns"] if t["speaker"] == "customer"]
                for i, turn in enumerate(customer):
                    yield f"turn:{conv['id']}:{i}", turn["text"], conv["locale"], {
                        "kind": "turn", "conversation": conv["id"], "index": i, "split": conv["split"],
                        "lang": conv["locale"].split("-")[0], "conv_kind": conv["kind"], "gold": turn.get("gold")}


def dump(args):
    rows = list(items())
    lines = "".join(json.dumps({"id": key, "text": text, "lang": lang}, ensure_ascii=False) + "\n" for key, text, lang, _ in rows)
    cmd = [args.calmline, "analyze", "--jsonl", "--precision", "f32", "--models", args.models, "--base", args.base]
    out = subprocess.run(cmd, input=lines, capture_output=True, text=True, check=True).stdout.splitlines()
    results = {r["id"]: r for r in map(json.loads, out)}
    with open(args.out, "w", encoding="utf-8") as f:
        for key, _, _, record in rows:
            r = results[key]
            f.write(json.dumps({"id": key, "scores": r["scores"], "thresholds_language": r["language"], **record}, ensure_ascii=False) + "\n")
    print(f"{len(rows)} scored into {args.out}", file=sys.stderr)


def cuts_for(head, lang):
    cuts = dict(head["thresholds"])
    cuts.update(head.get("thresholds_by_language", {}).get(lang, {}))
    return cuts


def ladder(flags, state):
    abuse, harm = flags & ABUSE, flags & HARM
    if not abuse:
        state["calm"] += 1
        if state["calm"] >= LADDER["cool_down_after"] and state["heated"] > 0:
            state["heated"] -= 1
            state["calm"] = 0
    else:
        state["calm"] = 0
        state["heated"] += 1
    if harm or abuse:
        if state["manager"]:
            action = "END_CONTACT"
        elif harm or state["boundary"]:
            action = "INVOLVE_MANAGER"
        elif state["heated"] >= LADDER["set_boundary_at"] and (not LADDER["boundary_needs"] or abuse & set(LADDER["boundary_needs"])):
            action = "SET_BOUNDARY"
        elif state["heated"] >= LADDER["stay_calm_at"]:
            action = "STAY_CALM"
        else:
            action = "LET_IT_PASS"
        state["boundary"] |= action == "SET_BOUNDARY"
        state["manager"] |= action == "INVOLVE_MANAGER"
        return action
    return "ACKNOWLEDGE" if flags & FRUSTRATION else "NONE"


def fresh():
    return {"calm": 0, "heated": 0, "boundary": False, "manager": False}


def evaluate(rows, cut_of):
    """cut_of(row) -> {label: cut}. Returns the eval-judgement figures for these rows."""
    labels = actions = cases = 0
    turns = right = sb = sb_ok = no_abuse = alarmed = 0
    state, current = None, None
    for r in rows:
        cuts = cut_of(r)
        flags = {l for l in LABELS if r["scores"][l] >= cuts[l]}
        if r["kind"] == "case":
            cases += 1
            labels += all(l in flags for l in r["must"]) and not any(l in flags for l in r["must_not"])
            actions += ladder(flags, fresh()) in r["actions"]
            continue
        if r["conversation"] != current:
            current, state = r["conversation"], fresh()
        action = ladder(flags, state)
        gold = r["gold"]
        if gold is None:
            continue
        turns += 1
        right += action == gold["action"]
        if ORDER.index(action) >= ORDER.index("SET_BOUNDARY"):
            sb += 1
            sb_ok += ORDER.index(gold["action"]) >= ORDER.index("SET_BOUNDARY")
        if not set(gold["labels"]) & ABUSIVE_GOLD:
            no_abuse += 1
            alarmed += ORDER.index(action) >= ORDER.index("LET_IT_PASS")
    pct = lambda a, b: 100.0 * a / b if b else 0.0
    return {"suite_labels": pct(labels, cases), "suite_actions": pct(actions, cases), "conversations": pct(right, turns),
            "boundary_calls": sb, "boundary_precision": pct(sb_ok, sb), "false_alarms": pct(alarmed, no_abuse), "cases": cases, "turns": turns}


def chosen(args):
    return [r for r in read_jsonl(args.scores) if r["split"] == args.split]


def auc(positives, negatives):
    """ROC AUC of scores (ties counted half): the ranking, whatever the cut. None without both classes."""
    if not positives or not negatives:
        return None
    ranked = sorted([(x, True) for x in positives] + [(x, False) for x in negatives])
    rank_sum, i = 0.0, 0
    while i < len(ranked):
        j = i
        while j + 1 < len(ranked) and ranked[j + 1][0] == ranked[i][0]:
            j += 1
        rank_sum += (i + j + 2) / 2 * sum(1 for k in range(i, j + 1) if ranked[k][1])
        i = j + 1
    p = len(positives)
    return (rank_sum - p * (p + 1) / 2) / (p * len(negatives))


def label_figures(rows, cut_of):
    """Each label's flags on the gold conversation turns against their gold labels, as
    eval-judgement's "Labels on the same turns" table, and its scores' AUC there:
    {label: {gold, flagged, flagged_and_gold, precision, recall, auc}}."""
    out = {}
    turns = [r for r in rows if r["kind"] == "turn" and r["gold"] is not None]
    for label in LABELS:
        gold = flagged = both = 0
        for r in turns:
            g, f = label in r["gold"]["labels"], r["scores"][label] >= cut_of(r)[label]
            gold, flagged, both = gold + g, flagged + f, both + (g and f)
        area = auc([r["scores"][label] for r in turns if label in r["gold"]["labels"]],
                   [r["scores"][label] for r in turns if label not in r["gold"]["labels"]])
        out[label] = {"gold": gold, "flagged": flagged, "flagged_and_gold": both,
                      "precision": round(both / flagged, 3) if flagged else None,
                      "recall": round(both / gold, 3) if gold else None, "auc": round(area, 3) if area is not None else None}
    return out


def report(args):
    head = json.load(open(args.head))
    rows, cut_of = chosen(args), lambda r: cuts_for(head, r["thresholds_language"])
    print(json.dumps({**evaluate(rows, cut_of), "labels": label_figures(rows, cut_of)}, indent=1))


def ascend(rows, cuts, cut_of, objective, grid, passes):
    """Coordinate ascent: each label's pooled cut in turn set to the grid point that most raises
    `objective` on `rows`, `passes` times over. `cut_of(pooled)` -> the per-row cut function."""
    best = objective(evaluate(rows, cut_of(cuts)))
    for _ in range(passes):
        for label in LABELS:
            for c in grid:
                trial = dict(cuts, **{label: c})
                score = objective(evaluate(rows, cut_of(trial)))
                if score > best + 1e-9:
                    best, cuts = score, trial
    return cuts


def ceiling(args):
    rows = chosen(args)
    head = json.load(open(args.head))
    pooled_only = lambda cuts: lambda r: cuts
    objective = lambda m: m["suite_labels"] + m["suite_actions"] + m["conversations"]
    cuts = ascend(rows, {l: head["thresholds"][l] for l in LABELS}, pooled_only, objective, [i / 100 for i in range(1, 100)], 3)
    print(json.dumps({"cuts": cuts, **evaluate(rows, lambda r: cuts)}, indent=1))


def fit_dev(args):
    rows = read_jsonl(args.scores)
    head = json.load(open(args.head))
    own = head.get("thresholds_by_language", {})
    with_own = lambda pooled: lambda r: {**pooled, **own.get(r["thresholds_language"], {})}
    dev = [r for r in rows if r["split"] == "dev"]
    objective = lambda m: m["suite_labels"] + m["suite_actions"] + m["conversations"] + 0.25 * m["boundary_precision"] - 2 * m["false_alarms"]
    calibrated = {l: head["thresholds"][l] for l in LABELS}
    cuts = ascend(dev, calibrated, with_own, objective, [i / 50 for i in range(1, 50)], 2)
    report = {"cuts": cuts}
    for name, pooled in (("calibrated", calibrated), ("fitted", cuts)):
        for split in ("dev", "test"):
            report[f"{name} {split}"] = evaluate([r for r in rows if r["split"] == split], with_own(pooled))
    print(json.dumps(report, indent=1))


def gold_cuts(head, labels, clear_false_flags, put_misses_right=True):
    """cut_of(row) with HEAD's cuts, except on conversation turns with gold: with
    `put_misses_right`, each of `labels` the gold has is flagged (cut 0), and, with
    `clear_false_flags`, each it lacks is not (cut infinite). Turns without gold (none today) keep
    their served flags, which still move the ladder."""
    def cut_of(r):
        cuts = cuts_for(head, r["thresholds_language"])
        if r["kind"] != "turn" or not r["gold"]:
            return cuts
        gold = r["gold"]["labels"]
        fixed = {l: 0.0 for l in labels if l in gold and put_misses_right}
        fixed.update({l: float("inf") for l in labels if l not in gold and clear_false_flags})
        return {**cuts, **fixed}

    return cut_of


def put_right(rows, head, labels):
    """The figures with HEAD's cuts, and with every gold label of `labels` a conversation turn
    misses flagged after all."""
    return {"as served": evaluate(rows, lambda r: cuts_for(head, r["thresholds_language"])),
            f"{','.join(labels)} misses put right": evaluate(rows, gold_cuts(head, labels, clear_false_flags=False))}


def cleared(rows, head, labels):
    """The figures with HEAD's cuts, and with every false flag of `labels` on the conversation
    turns cleared (their misses left as they are)."""
    return {"as served": evaluate(rows, lambda r: cuts_for(head, r["thresholds_language"])),
            f"{','.join(labels)} false flags cleared": evaluate(rows, gold_cuts(head, labels, clear_false_flags=True, put_misses_right=False))}


def gold_flags(rows, head, labels):
    """The figures with each of `labels` flagged on conversation turns exactly when the gold has it."""
    return evaluate(rows, gold_cuts(head, labels, clear_false_flags=True))


# Each label alone, the groups the ladder treats alike (models/policy.toml [ladder]), and all seven
# (a sanity check: every conversation figure perfect).
ORACLE_GROUPS = [[l] for l in LABELS] + [sorted(ABUSE), sorted(HARM), LABELS]


def oracle(args):
    rows, head = chosen(args), json.load(open(args.head))
    report = {"as served": evaluate(rows, lambda r: cuts_for(head, r["thresholds_language"]))}
    for labels in ORACLE_GROUPS:
        report[f"{','.join(labels)} as gold"] = gold_flags(rows, head, labels)
    print(json.dumps(report, indent=1))


def missed(args):
    labels = args.labels.split(",")
    unknown = sorted(set(labels) - set(LABELS))
    if unknown:
        sys.exit(f"unknown label(s) {', '.join(unknown)}; the labels are {', '.join(LABELS)}")
    mend = cleared if args.command == "false-flags" else put_right
    print(json.dumps(mend(chosen(args), json.load(open(args.head)), labels), indent=1))


def cue_gap_counts(rows, head, label, has_cue):
    """{(kind, with a cue): [calm, calm flagged, with the label, with the label flagged]} over the
    rows' suite cases and gold conversation turns; `has_cue(row)` says whether its text has a cue."""
    counts = {}
    for r in rows:
        if r["kind"] == "turn":
            if r["gold"] is None:
                continue
            positive = label in r["gold"]["labels"]
            negative = not positive
        else:
            positive, negative = label in r["must"], label in r["must_not"]
            if not (positive or negative):
                continue
        flagged = r["scores"][label] >= cuts_for(head, r["thresholds_language"])[label]
        c = counts.setdefault((r["kind"], has_cue(r)), [0, 0, 0, 0])
        c[0 if negative else 2] += 1
        c[1 if negative else 3] += flagged
    return counts


def cue_gap(args):
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import label_cues
    head = json.load(open(args.head))
    text = {key: t for key, t, _, _ in items()}
    cues = {}

    def has_cue(r):
        lang = r["lang"]
        if lang not in cues:
            known = label_cues.targets(label_cues.training_cases(lang, args.before_round), args.label)
            cues[lang] = {c for c, _, _ in label_cues.label_cues(known, 5, 0.9)} if known else set()
        t = text[r["id"]]
        return bool(label_cues.cues_of(t) & cues[lang]) or (args.label == "frustration" and any(ch.isdigit() for ch in t))

    rows = read_jsonl(args.scores)
    pct = lambda a, b: round(100.0 * a / b, 1) if b else None
    report = {}
    for split in ("dev", "test"):
        counts = cue_gap_counts([r for r in rows if r["split"] == split], head, args.label, has_cue)
        for (kind, cue), (calm, false_flags, positive, hits) in sorted(counts.items()):
            report[f"{split} {kind}s {'with' if cue else 'without'} a cue"] = {
                "calm": calm, "calm flagged %": pct(false_flags, calm), f"with {args.label}": positive, "recall %": pct(hits, positive)}
    print(json.dumps(report, indent=1))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    d = sub.add_parser("dump")
    d.add_argument("models")
    d.add_argument("out")
    d.add_argument("--base", default=os.path.join(ROOT, "models/base"))
    d.add_argument("--calmline", default=os.path.join(ROOT, "target/release/calmline"))
    for name in ("report", "ceiling", "fit-dev", "missed", "false-flags", "oracle"):
        s = sub.add_parser(name)
        s.add_argument("scores")
        s.add_argument("head")
        if name != "fit-dev":  # it reports dev and test both
            s.add_argument("--split", default="test")
        if name in ("missed", "false-flags"):
            s.add_argument("--labels", default="rudeness" if name == "missed" else "insult", help="comma-separated labels whose misses are put right (missed) or false flags cleared (false-flags)")
    g = sub.add_parser("cue-gap")
    g.add_argument("scores")
    g.add_argument("head")
    g.add_argument("--label", default="frustration", choices=LABELS)
    g.add_argument("--before-round", type=int, default=33, help="cue lists from the training rounds below this one")
    args = p.parse_args()
    {"cue-gap": cue_gap, "dump": dump, "report": report, "ceiling": ceiling, "fit-dev": fit_dev, "missed": missed, "false-flags": missed, "oracle": oracle}[args.command](args)


if __name__ == "__main__":
    main()
