#!/usr/bin/env python3
"""Expands the project's in-domain templates (data/indomain/<lang>.txt) into labelled turns
(data/indomain/turns.jsonl). Standard library only; deterministic.

Template files: "@slot: a | b | c" lines define fillers; "[id] split labels : text" lines are
templates, where labels lists the positive labels ("none" for none) and every other label is a
negative. A slot used twice in one template gets the same filler. Each template yields at most
MAX_PER_TEMPLATE turns; the split is the template's, so near-duplicates never cross splits.

    python3 tools/expand_indomain.py
"""
import itertools, json, os, random, re, sys

LABELS = ["frustration", "rudeness", "insult", "profanity", "threat", "identity_attack", "sexual_harassment"]
MAX_PER_TEMPLATE = 16
HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(os.path.dirname(HERE), "data", "indomain")
TEMPLATE = re.compile(r"^\[(?P<id>[a-z]{2}-\d+)\]\s+(?P<split>train|dev|test)\s+(?P<labels>[a-z_,]+)\s+:\s+(?P<text>.+)$")


def expand(path):
    lang = os.path.basename(path).split(".")[0]
    slots, rows = {}, []
    for n, line in enumerate(open(path, encoding="utf-8"), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("@"):
            name, fillers = line[1:].split(":", 1)
            slots[name.strip()] = [f.strip() for f in fillers.split("|")]
            continue
        m = TEMPLATE.match(line)
        if not m:
            sys.exit(f"{path}:{n}: not a slot or template line")
        positives = [] if m["labels"] == "none" else m["labels"].split(",")
        unknown = set(positives) - set(LABELS)
        if unknown:
            sys.exit(f"{path}:{n}: unknown labels {unknown}")
        names = sorted(set(re.findall(r"\{(\w+)\}", m["text"])))
        missing = [s for s in names if s not in slots]
        if missing:
            sys.exit(f"{path}:{n}: undefined slots {missing}")
        combos = list(itertools.product(*(slots[s] for s in names)))
        random.Random(m["id"]).shuffle(combos)
        for i, combo in enumerate(combos[:MAX_PER_TEMPLATE]):
            text = m["text"]
            for name, filler in zip(names, combo):
                text = text.replace("{" + name + "}", filler)
            text = text[0].upper() + text[1:]  # a filler may open the sentence
            rows.append({
                "id": f"{m['id']}-{i}", "lang": lang, "template": m["id"], "split": m["split"], "text": text,
                "labels": {label: int(label in positives) for label in LABELS},
            })
    return rows


def main():
    rows = []
    for name in sorted(os.listdir(DATA)):
        if name.endswith(".txt"):
            rows.extend(expand(os.path.join(DATA, name)))
    with open(os.path.join(DATA, "turns.jsonl"), "w", encoding="utf-8") as out:
        for r in rows:
            out.write(json.dumps(r, ensure_ascii=False) + "\n")
    counts = {}
    for r in rows:
        key = (r["lang"], r["split"])
        counts[key] = counts.get(key, 0) + 1
    for key in sorted(counts):
        print(*key, counts[key])
    print("total", len(rows))


if __name__ == "__main__":
    main()
