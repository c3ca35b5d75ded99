#!/usr/bin/env python3
"""Write a copy of the encoder blob in which every word-embedding row that no exported example uses
is zero, so that it compresses to a third: a GPU host reached through a small upload gets the
trainer's whole input (blob, examples) in a few tens of MB. The trainer only ever looks up the rows
of the examples' token ids, so training on the slim blob is identical to training on the full one;
the adapters it writes are used with the full blob as always.

    python3 trainer/slim_blob.py --blob models/base/e5-small-q4.bin --examples E.jsonl --out slim.bin
    gzip -1 slim.bin
"""
import argparse, json, struct

BLOCK_BYTES, BLOCK_WEIGHTS = 18, 32  # GGML Q4_0 (../shared/MODEL-NOTES.md)


def word_embedding(b):
    """(offset, byte length, hidden) of `emb.word` in the blob's bytes b."""
    hidden, = struct.unpack_from("<i", b, 8)
    o = 8 + 28 + 4 + 4
    count, = struct.unpack_from("<i", b, o); o += 20
    piece_bytes, = struct.unpack_from("<Q", b, o); o += 8
    o += 4 * (count + 1) + 4 * count + piece_bytes + 4
    norm_len, = struct.unpack_from("<I", b, o); o += 4 + norm_len
    n, = struct.unpack_from("<i", b, o); o += 4
    for _ in range(n):
        ln, = struct.unpack_from("<H", b, o); o += 2
        name = b[o:o + ln].decode(); o += ln
        _, elements, off, blen = struct.unpack_from("<BIQQ", b, o); o += 21
        if name == "emb.word":
            return off, blen, hidden, elements
    raise SystemExit("the blob has no emb.word")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--blob", required=True)
    p.add_argument("--examples", required=True, help="JSON lines from `calmline export-examples`")
    p.add_argument("--out", required=True)
    args = p.parse_args()
    b = bytearray(open(args.blob, "rb").read())
    off, blen, hidden, elements = word_embedding(b)
    if blen == elements * 4:
        row_bytes = hidden * 4
    else:
        row_bytes = hidden // BLOCK_WEIGHTS * BLOCK_BYTES
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
