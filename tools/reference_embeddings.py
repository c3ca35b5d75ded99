#!/usr/bin/env python3
"""Independent reference for the golden embedding test (tests/it/golden.rs).

Reads the E5S1 blob with its own parser, dequantises every tensor to float64 with numpy, runs
BERT (post-LN, exact-erf GELU) in float64, tokenises with the Python `tokenizers` package from
the same tokenizer.json, and prints the L2-normalised mean-pooled e5 embeddings of fixed
sentences as JSON. Nothing here shares code with the Rust implementation.

    python3 -m venv /tmp/ref && /tmp/ref/bin/pip install numpy tokenizers
    /tmp/ref/bin/python tools/reference_embeddings.py models/base > tests/golden/embeddings.json
"""
import json, math, struct, sys
import numpy as np
from tokenizers import Tokenizer

SENTENCES = [
    ("en", "The router has dropped the connection five times today."),
    ("en", "Thank you so much, you have been really helpful!"),
    ("hu", "Ez teljesen elfogadhatatlan, már harmadszor hívom önöket!"),
    ("he", "תודה רבה על העזרה, יום טוב"),
    ("de", "Ich warte seit zwei Wochen auf eine Antwort, das ist eine Frechheit."),
]

def tensor_directory(b):
    """The blob's configuration and its tensor directory, {name: (elements, offset, byte length)},
    from the blob's bytes b."""
    assert b[:4] == b"E5S1"
    o = 8
    hidden, layers, heads, ffn, vocab, maxpos, types = struct.unpack_from("<7i", b, o); o += 28
    eps, = struct.unpack_from("<f", b, o); o += 4
    o += 4  # block size
    count, = struct.unpack_from("<i", b, o); o += 20
    piece_bytes, = struct.unpack_from("<Q", b, o); o += 8
    o += 4 * (count + 1) + 4 * count + piece_bytes
    o += 4
    norm_len, = struct.unpack_from("<I", b, o); o += 4 + norm_len
    n, = struct.unpack_from("<i", b, o); o += 4
    directory = {}
    for _ in range(n):
        ln, = struct.unpack_from("<H", b, o); o += 2
        name = b[o:o + ln].decode(); o += ln
        _, el, off, blen = struct.unpack_from("<BIQQ", b, o); o += 21
        directory[name] = (el, off, blen)
    return dict(hidden=hidden, layers=layers, heads=heads, ffn=ffn, eps=float(eps)), directory

def read_blob(path):
    b = open(path, "rb").read()
    cfg, directory = tensor_directory(b)
    tensors = {}
    for name, (el, off, blen) in directory.items():
        raw = b[off:off + blen]
        if blen == el * 4:
            t = np.frombuffer(raw, dtype="<f4").astype(np.float64)
        else:
            blocks = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 18)
            d = blocks[:, :2].copy().view("<f2").astype(np.float64)  # [n, 1]
            q = blocks[:, 2:]
            lo = (q & 0x0F).astype(np.int32) - 8
            hi = (q >> 4).astype(np.int32) - 8
            t = (np.concatenate([lo, hi], axis=1) * d).reshape(-1)
        tensors[name] = t
    return cfg, tensors

def layer_norm(x, w, b, eps):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * w + b

def erf(x):
    return np.vectorize(math.erf)(x)

def embed(cfg, t, ids):
    h, nh = cfg["hidden"], cfg["heads"]
    dh = h // nh
    W = lambda n, o, i: t[n].reshape(o, i)
    x = t["emb.word"].reshape(-1, h)[ids] + t["emb.pos"].reshape(-1, h)[: len(ids)] + t["emb.type"][:h]
    x = layer_norm(x, t["emb.ln.w"], t["emb.ln.b"], cfg["eps"])
    for i in range(cfg["layers"]):
        p = f"l{i}."
        lin = lambda n, v, o, inp: v @ W(p + n + ".w", o, inp).T + t[p + n + ".b"]
        q = lin("q", x, h, h).reshape(-1, nh, dh).transpose(1, 0, 2)
        k = lin("k", x, h, h).reshape(-1, nh, dh).transpose(1, 0, 2)
        v = lin("v", x, h, h).reshape(-1, nh, dh).transpose(1, 0, 2)
        s = q @ k.transpose(0, 2, 1) / math.sqrt(dh)
        s = np.exp(s - s.max(-1, keepdims=True)); s /= s.sum(-1, keepdims=True)
        c = (s @ v).transpose(1, 0, 2).reshape(-1, h)
        x = layer_norm(lin("ao", c, h, h) + x, t[p + "aln.w"], t[p + "aln.b"], cfg["eps"])
        f = lin("fi", x, cfg["ffn"], h)
        f = 0.5 * f * (1.0 + erf(f / math.sqrt(2.0)))
        x = layer_norm(lin("fo", f, h, cfg["ffn"]) + x, t[p + "oln.w"], t[p + "oln.b"], cfg["eps"])
    e = x.mean(0)
    return e / np.linalg.norm(e)

def main():
    base = sys.argv[1]
    cfg, t = read_blob(f"{base}/e5-small-q4.bin")
    tok = Tokenizer.from_file(f"{base}/tokenizer.json")
    tok.no_truncation(); tok.no_padding()
    out = []
    for lang, text in SENTENCES:
        ids = tok.encode("query: " + text).ids
        out.append({"lang": lang, "text": text, "ids": ids,
                    "embedding": [round(float(v), 7) for v in embed(cfg, t, np.array(ids))]})
    json.dump({"reference": "tools/reference_embeddings.py: numpy float64 BERT on the dequantised blob",
               "sentences": out}, sys.stdout, ensure_ascii=False)
    print()

if __name__ == "__main__":
    main()
