#!/usr/bin/env python3
"""Lists the words a label's training turns never use without the label: shortcuts the encoder can learn.

The project's training turns (`data/training/*.jsonl`) were written to teach labels, and writers
reach for the same words when they write a label: a frustrated turn says how many weeks it has
waited, what it cost, that it wants it in writing. When a word or a pair of words turns up in
dozens of training turns and (nearly) all of them carry the label, nothing in the training data
tells the encoder that the word itself is not the label; a calm turn that happens to use it ("the
fifth, in the morning", "80,000 pesos, only for this week") then scores like a complaint (model
card, experiment 76). This counts, per language, every word and pair of adjacent words (digit runs
read as `#`) over the training turns whose target for the label is known (the label in `must`, or
in `must_not`), and lists those seen at least `--min-count` times with the label at least
`--min-rate` of the time. Only training files are read: the list is safe to hand to writers.

    python3 tools/label_cues.py [--label frustration] [--min-count 5] [--min-rate 0.9] [--top 60] [--lang ru ...]
        # a table per language: cue, turns with the label / turns with the cue
    python3 tools/label_cues.py --json OUT.json ...    # the same as {lang: [[cue, with_label, seen], ...]}
"""
import argparse
import collections
import json
import pathlib
import re

TRAINING = pathlib.Path(__file__).resolve().parent.parent / "data" / "training"


def words(text: str) -> list[str]:
    return [re.sub(r"\d+", "#", w) for w in re.findall(r"\w+", text.casefold())]


def cues_of(text: str) -> set[str]:
    """The words of `text` and its pairs of adjacent words, each once."""
    w = words(text)
    return set(w) | {f"{a} {b}" for a, b in zip(w, w[1:])}


def targets(cases: list[dict], label: str) -> list[tuple[str, bool]]:
    """(text, has the label) for the cases whose target for `label` is known."""
    known = []
    for case in cases:
        if label in case["must"]:
            known.append((case["text"], True))
        elif label in case["must_not"]:
            known.append((case["text"], False))
    return known


def label_cues(known: list[tuple[str, bool]], min_count: int, min_rate: float) -> list[tuple[str, int, int]]:
    """(cue, turns with the label, turns with the cue), the commonest first, for the cues seen at
    least `min_count` times with the label at least `min_rate` of the time. A cue that is only `#`
    (a bare number) is kept: digits are a cue too."""
    seen, with_label = collections.Counter(), collections.Counter()
    for text, has_label in known:
        for cue in cues_of(text):
            seen[cue] += 1
            with_label[cue] += has_label
    found = [(cue, with_label[cue], n) for cue, n in seen.items() if n >= min_count and with_label[cue] >= min_rate * n]
    return sorted(found, key=lambda c: (-c[2], -c[1], c[0]))


def file_round(path: pathlib.Path) -> int:
    """The round a training file holds: `<lang>.jsonl` is round 1, `<lang>-r26b.jsonl` round 26."""
    stem = path.name.split(".")[0]
    return int(re.match(r"[a-z]+-r(\d+)", stem).group(1)) if "-r" in stem else 1


def training_cases(lang: str, before_round: int | None = None) -> list[dict]:
    """The training turns of `lang`, only those of rounds below `before_round` when given (to list
    the cues a model was trained on before the rounds written against them)."""
    cases = []
    for path in sorted(TRAINING.glob(f"{lang}*.jsonl")):
        if path.name.split(".")[0].split("-")[0] != lang:
            continue
        if before_round is not None and file_round(path) >= before_round:
            continue
        cases += [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return cases


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--label", default="frustration")
    p.add_argument("--min-count", type=int, default=5)
    p.add_argument("--min-rate", type=float, default=0.9)
    p.add_argument("--top", type=int, default=60, help="at most this many cues a language")
    p.add_argument("--lang", nargs="*", help="default: every language with training turns")
    p.add_argument("--json", help="write {lang: [[cue, with_label, seen], ...]} here instead of printing")
    args = p.parse_args()
    langs = args.lang or sorted({f.name.split(".")[0].split("-")[0] for f in TRAINING.glob("*.jsonl")})
    report = {}
    for lang in langs:
        known = targets(training_cases(lang), args.label)
        if not known:
            raise SystemExit(f"no training turn in {lang} has a known target for {args.label}")
        report[lang] = label_cues(known, args.min_count, args.min_rate)[: args.top]
        if not args.json:
            share = sum(has for _, has in known) / len(known)
            print(f"{lang}: {len(known)} turns, {share:.0%} with {args.label}; {len(report[lang])} cues")
            print("  " + " | ".join(f"{cue} {w}/{n}" for cue, w, n in report[lang]))
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(report, ensure_ascii=False, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
