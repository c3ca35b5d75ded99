#!/usr/bin/env python3
"""How far a second reader agrees with the conversations' gold, and where the model stands between them.

`data/conversations/second-reading/<lang>-<split>.jsonl` holds labels that a second reader gave every
customer turn without seeing the gold (one line per turn: `{"id", "index", "labels", "unsure"?}`).
This compares them with the gold labels of `data/conversations/<lang>.jsonl`:

    python3 tools/annotation_agreement.py [--split dev] [--scores SCORES.jsonl --head HEAD.json]

- per label: how often the two readers agree, Cohen's kappa, and how many turns each flags;
- per turn: the action each reading gives when run through the ladder of `models/policy.toml`
  (`tools/replay_judgement.py`'s), so the agreement is on the measure the issue's bar uses;
- with `--scores` (a dump of `tools/replay_judgement.py dump`) and its head: the model's action
  accuracy against the gold and against the second reading on the same turns.

The gold actions follow the same ladder from the gold labels (data/conversations/README.md), which
this checks: a gold turn whose action the ladder does not give from its labels is counted.
"""
import argparse, collections, json, os, sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from replay_judgement import LABELS, ROOT, cuts_for, fresh, items, ladder, read_jsonl  # noqa: E402

SECOND = os.path.join(ROOT, "data/conversations/second-reading")


def kappa(pairs):
    """Cohen's kappa of two yes/no readings, given as (a, b) pairs; None when undefined."""
    n = len(pairs)
    if n == 0:
        return None
    observed = sum(a == b for a, b in pairs) / n
    pa, pb = sum(a for a, _ in pairs) / n, sum(b for _, b in pairs) / n
    expected = pa * pb + (1 - pa) * (1 - pb)
    return None if expected == 1 else (observed - expected) / (1 - expected)


def gold_turns(split):
    """{(conversation id, customer index): (lang, gold labels, gold action)} in conversation order."""
    return {(r["conversation"], r["index"]): (r["lang"], set(r["gold"]["labels"]), r["gold"]["action"])
            for _, _, _, r in items() if r["kind"] == "turn" and r["split"] == split}


def second_turns(split):
    turns = {}
    for name in sorted(os.listdir(SECOND)):
        if name.endswith(f"-{split}.jsonl"):
            for r in read_jsonl(os.path.join(SECOND, name)):
                turns[(r["id"], r["index"])] = (set(r["labels"]), bool(r.get("unsure")))
    return turns


def actions(keys, labels_of):
    """The ladder's action for every turn, each conversation from a fresh state, turns in order."""
    out, state, current = {}, None, None
    for key in keys:
        if key[0] != current:
            current, state = key[0], fresh()
        out[key] = ladder(labels_of(key), state)
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--split", default="dev")
    p.add_argument("--scores", help="a dump of tools/replay_judgement.py dump")
    p.add_argument("--head", help="the head.json whose cuts turn --scores into labels")
    args = p.parse_args()

    gold, second = gold_turns(args.split), second_turns(args.split)
    keys = [k for k in gold if k in second]  # conversation order (gold_turns keeps it)
    missing = [k for k in gold if k not in second]
    report = {"turns": len(keys), "turns_without_second_reading": len(missing),
              "unsure": sum(second[k][1] for k in keys), "labels": {}}
    for label in LABELS:
        pairs = [(label in gold[k][1], label in second[k][0]) for k in keys]
        report["labels"][label] = {
            "gold": sum(a for a, _ in pairs), "second": sum(b for _, b in pairs),
            "agree": round(100 * sum(a == b for a, b in pairs) / max(1, len(pairs)), 1),
            "kappa": None if kappa(pairs) is None else round(kappa(pairs), 3)}

    gold_by_ladder = actions(keys, lambda k: gold[k][1])
    report["gold_actions_not_from_ladder"] = sum(gold_by_ladder[k] != gold[k][2] for k in keys)
    second_actions = actions(keys, lambda k: second[k][0])
    report["action_agreement"] = round(100 * sum(second_actions[k] == gold[k][2] for k in keys) / max(1, len(keys)), 1)
    per_lang = collections.defaultdict(lambda: [0, 0])
    confusions = collections.Counter()
    for k in keys:
        per_lang[gold[k][0]][0] += second_actions[k] == gold[k][2]
        per_lang[gold[k][0]][1] += 1
        if second_actions[k] != gold[k][2]:
            confusions[f"{gold[k][2]} -> {second_actions[k]}"] += 1
    report["action_agreement_by_language"] = {l: round(100 * a / n, 1) for l, (a, n) in sorted(per_lang.items())}
    report["action_disagreements_gold_to_second"] = dict(confusions.most_common())

    if args.scores:
        head = json.load(open(args.head))
        scores = {(r["conversation"], r["index"]): r for r in read_jsonl(args.scores) if r["kind"] == "turn"}
        def model_labels(k):
            r = scores[k]
            cuts = cuts_for(head, r["thresholds_language"])
            return {l for l in LABELS if r["scores"][l] >= cuts[l]}
        model = actions(keys, model_labels)
        n = max(1, len(keys))
        report["model"] = {
            "accuracy_against_gold": round(100 * sum(model[k] == gold[k][2] for k in keys) / n, 1),
            "accuracy_against_second": round(100 * sum(model[k] == second_actions[k] for k in keys) / n, 1),
            "right_by_either_reading": round(100 * sum(model[k] in (gold[k][2], second_actions[k]) for k in keys) / n, 1)}
    print(json.dumps(report, indent=1, ensure_ascii=False))


if __name__ == "__main__":
    main()
