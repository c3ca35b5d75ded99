#!/usr/bin/env python3
"""Write a copy of the encoder blob in which every word-embedding row that no exported example uses
is zero, so that it compresses to two fifths (72 MB to 29 MB with `xz -6`): a GPU host reached
through a small upload gets the trainer's whole input (blob, examples) in about 31 MB. The trainer
only ever looks up the rows of the examples' token ids, so training on the slim blob is identical
to training on the full one; the adapters it writes are used with the full blob as always.

    python3 trainer/slim_blob.py --blob models/base/e5-small-q4.bin --examples E.jsonl --out slim.bin
    xz -6 slim.bin
"""
import argparse, json, os, sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tools"))
from reference_embeddings import tensor_directory  # noqa: E402  (the project's own blob reader)

BLOCK_BYTES, BLOCK_WEIGHTS = 18, 32  # GGML Q4_0 (../shared/MODEL-NOTES.md)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--blob", required=True)
    p.add_argument("--examples", required=True, help="JSON lines from `calmline export-examples`")
    p.add_argument("--out", required=True)
    args = p.parse_args()
    b = bytearray(open(args.blob, "rb").read())
    cfg, directory = tensor_directory(b)
    elements, off, blen = directory["emb.word"]
    hidden = cfg["hidden"]
    row_bytes = hidden * 4 if blen == elements * 4 else hidden // BLOCK_WEIGHTS * BLOCK_BYTES
    rows = blen // row_bytes
    used = set()
    with open(args.examples, encoding="utf-8") as f:
        for line in f:
            used.update(json.loads(line)["ids"])
    for row in range(rows):
        if row not in used:
            start = off + row * row_bytes
            b[start:start + row_bytes] = bytes(row_bytes)
    open(args.out, "wb").write(b)
    print(f"{len(used)} of {rows} word-embedding rows kept; written to {args.out}")


if __name__ == "__main__":
    main()
