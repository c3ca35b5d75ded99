#!/usr/bin/env python3
"""Writes the fuzzers' seed inputs into fuzz/corpus/<target>/ (git-ignored; small and made
from the project's own files, so no data set is committed):

    python3 fuzz/make_seeds.py
"""
import os, shutil, struct

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def seed(target, name, data):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def tiny_blob():
    """A well-formed blob in the layout of MODEL-NOTES.md, tiny: 2 tokenizer pieces, one f32
    tensor of 4 values and one Q4_0 tensor of one block."""
    header = b"E5S1" + struct.pack("<I", 1)
    dims = [8, 1, 2, 16, 2, 8, 2]  # hidden, layers, heads, ffn, vocab, max positions, token types
    header += b"".join(struct.pack("<I", d) for d in dims) + struct.pack("<f", 1e-12) + struct.pack("<I", 32)
    pieces = [b"a", b"b"]
    tok = struct.pack("<I", len(pieces)) + bytes(16) + struct.pack("<Q", sum(map(len, pieces)))
    offs, o = [], 0
    for p in pieces:
        offs.append(o)
        o += len(p)
    offs.append(o)
    tok += b"".join(struct.pack("<I", x) for x in offs) + b"".join(struct.pack("<f", 0.0) for _ in pieces) + b"".join(pieces)
    norm = struct.pack("<I", 0) + struct.pack("<I", 0)
    f32_data = struct.pack("<4f", 1, 2, 3, 4)
    q4_data = struct.pack("<e", 0.5) + bytes(range(16))
    names = [(b"embeddings.word", 4, f32_data), (b"layer.0.q", 32, q4_data)]
    directory_len = 4 + sum(2 + len(n) + 1 + 4 + 8 + 8 for n, _, _ in names)
    start = len(header) + len(tok) + len(norm) + directory_len
    directory, data = struct.pack("<I", len(names)), b""
    for n, elements, raw in names:
        directory += struct.pack("<H", len(n)) + n + bytes([0]) + struct.pack("<I", elements) + struct.pack("<QQ", start + len(data), len(raw))
        data += raw
    return header + tok + norm + directory + data


def main():
    for name in ("transcripts.jsonl",):
        seed("transcripts_jsonl", name, open(os.path.join(ROOT, "docs/examples", name), "rb").read())
    seed("transcripts_jsonl", "bad.jsonl", b'{"id": 1, "turns": [{"speaker": "robot", "text": ""}]}\n{not json\n')
    seed("transcripts_csv", "transcripts.csv", open(os.path.join(ROOT, "docs/examples/transcripts.csv"), "rb").read())
    seed("transcripts_csv", "quoted.csv", b'conversation_id,turn_index,speaker,text\nc1,0,customer,"a ""quoted"", text"\nc1,x,agent,\n')
    seed("policy", "policy.toml", open(os.path.join(ROOT, "models/policy.toml"), "rb").read())
    seed("blob", "tiny.bin", tiny_blob())
    base = os.path.join(ROOT, "models/base/e5-small-q4.bin")
    if os.path.exists(base):
        seed("blob", "real-head.bin", open(base, "rb").read(4096))


if __name__ == "__main__":
    main()
