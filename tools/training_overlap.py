#!/usr/bin/env python3
"""Finds project training turns too close to an evaluation text of the same language.

`data/training/*.jsonl` trains the model; the behaviour suite (`data/behaviour/<lang>.jsonl`) and
the conversations (`data/conversations/<lang>.jsonl`) judge it, and the agent replies of the
conversations and of `data/agent-conduct/turns.jsonl` judge agent conduct (`calmline eval-conduct`,
which reads the classifier's rudeness on an agent's words). A training turn that repeats or
lightly rewords an evaluation text would make the reported results flatter the model, so every
training turn is compared with every dev and test suite case, conversation turn (customer's and
agent's) and agent-conduct reply of its language: texts equal
after normalising (case, accents, punctuation, spaces), or a similarity ratio (difflib) above the
limit, are listed. Exit status 1 when any is found.

    python3 tools/training_overlap.py [data/training/pt-r5.jsonl ...]
        # default: every file of data/training and data/agent-replies
"""
import difflib
import json
import pathlib
import re
import sys
import unicodedata

DATA = pathlib.Path(__file__).resolve().parent.parent / "data"
LIMIT = 0.85


def normalise(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    letters = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join(re.sub(r"[^\w]+", " ", letters).split())


def read_jsonl(path: pathlib.Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def evaluation_texts(lang: str) -> list[tuple[str, str]]:
    """(where, text) for every dev and test suite case, conversation turn and agent-conduct reply in
    `lang` (their train splits may be trained on anyway)."""
    texts = []
    suite = DATA / "behaviour" / f"{lang}.jsonl"
    if suite.exists():
        texts += [(case["id"], case["text"]) for case in read_jsonl(suite) if case["split"] != "train"]
    conversations = DATA / "conversations" / f"{lang}.jsonl"
    if conversations.exists():
        for conversation in read_jsonl(conversations):
            if conversation["split"] == "train":
                continue
            for n, turn in enumerate(conversation["turns"]):
                texts.append((f"{conversation['id']}#{n}", turn["text"]))
    conduct = DATA / "agent-conduct" / "turns.jsonl"
    if conduct.exists():
        texts += [(reply["id"], reply["text"]) for reply in read_jsonl(conduct) if reply["lang"] == lang and reply["split"] != "train"]
    return texts


def too_close(text: str, evaluation: list[str]) -> list[int]:
    """Indices of the (normalised) evaluation texts that `text` repeats or lightly rewords."""
    mine = normalise(text)
    # The training text is sequence b, which SequenceMatcher indexes once; each evaluation text
    # becomes sequence a in turn. (Passing it as a and then calling set_seq1 left b empty and
    # every ratio 0 until 2026-12-05: only exact repeats were caught.)
    matcher = difflib.SequenceMatcher(None, "", mine, autojunk=False)
    found = []
    for n, theirs in enumerate(evaluation):
        matcher.set_seq1(theirs)
        if mine == theirs or (matcher.real_quick_ratio() > LIMIT and matcher.quick_ratio() > LIMIT and matcher.ratio() > LIMIT):
            found.append(n)
    return found


def main(paths: list[str]) -> int:
    files = [pathlib.Path(p) for p in paths] or sorted((DATA / "training").glob("*.jsonl")) + sorted((DATA / "agent-replies").glob("*.jsonl"))
    found = 0
    for path in files:
        cases = read_jsonl(path)
        lang = cases[0]["lang"] if cases else path.stem.split("-")[0]
        evaluation = evaluation_texts(lang)
        normalised = [normalise(text) for _, text in evaluation]
        for case in cases:
            for n in too_close(case["text"], normalised):
                where, text = evaluation[n]
                found += 1
                print(f"{case['id']} ~ {where}: {case['text']!r} ~ {text!r}")
    print(f"{found} training turns too close to an evaluation text", file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
