#!/usr/bin/env python3
"""Assigns ids and splits to the behaviour suite (data/behaviour/<lang>.jsonl), in place.

Splits are by `group` (a situation, its paraphrases and contrastive twins), from a stable hash of
the group id: 40% train, 20% dev, 40% test of the groups, so no near-duplicate crosses from
training to evaluation. Ids are `<lang>-<NNNN>` in file order. Running it again changes nothing.
"""
import hashlib
import json
import pathlib
import sys

FIELDS = ["id", "lang", "functionality", "group", "split", "text", "must", "must_not", "actions"]


def split_of(group: str) -> str:
    bucket = int(hashlib.sha256(group.encode()).hexdigest(), 16) % 10
    return "train" if bucket < 4 else "dev" if bucket < 6 else "test"


def main(folder: str) -> None:
    for path in sorted(pathlib.Path(folder).glob("*.jsonl")):
        rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        lang = path.stem
        out = []
        for n, row in enumerate(rows, 1):
            row["id"] = f"{lang}-{n:04d}"
            row["split"] = split_of(row["group"])
            out.append(json.dumps({k: row[k] for k in FIELDS}, ensure_ascii=False))
        path.write_text("\n".join(out) + "\n", encoding="utf-8")
        counts = {s: sum(1 for r in rows if r["split"] == s) for s in ("train", "dev", "test")}
        print(f"{path.name}: {len(rows)} cases, {counts}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "data/behaviour")
