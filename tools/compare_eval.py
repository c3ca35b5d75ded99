#!/usr/bin/env python3
"""Two `calmline eval`/`train` test reports side by side, for the model card.

    python3 tools/compare_eval.py PREVIOUS.json NEW.json

One row per (source, language, label) present in both: F1 (or the false-positive rate where the
split has no positives), AUC, and the change; rows that lost more than 0.02 of F1 are marked.
"""
import json
import sys


def rows(path):
    report = json.load(open(path, encoding="utf-8"))
    return report["model_version"], {(r["source"], r["lang"], r["label"]): r for r in report["rows"]}


def cell(r):
    auc = "–" if r["auc"] is None else f"{r['auc']:.3f}"
    if r["positives"] == 0:
        return f"FPR {r['false_positive_rate']:.3f}", auc
    return f"{r['f1']:.3f}", auc


def main(previous_path, new_path):
    previous_name, previous = rows(previous_path)
    new_name, new = rows(new_path)
    print(f"| source | lang | label | n | pos | {previous_name} F1 / AUC | {new_name} F1 / AUC | ΔF1 |")
    print("|---|---|---|---:|---:|---:|---:|---:|")
    for key in sorted(set(previous) & set(new)):
        p, n = previous[key], new[key]
        (pf, pa), (nf, na) = cell(p), cell(n)
        if n["positives"]:
            delta = n["f1"] - p["f1"]
            mark = " **▼**" if delta < -0.02 else ""
            change = f"{delta:+.3f}{mark}"
        else:
            change = f"FPR {n['false_positive_rate'] - p['false_positive_rate']:+.3f}"
        print(f"| {key[0]} | {key[1]} | {key[2]} | {n['n']} | {n['positives']} | {pf} / {pa} | {nf} / {na} | {change} |")


if __name__ == "__main__":
    main(*sys.argv[1:3])
