#!/usr/bin/env python3
"""Average several fine-tuned adapter sets into one (a "model soup" of low-rank adapters).

    python trainer/soup.py --out models/experiments/soup-a models/experiments/lora0-20 models/experiments/lora0-20s2
    python trainer/soup.py --out models/experiments/soup-b --weights 1,1,2 A B C   # C counts twice

Each input merges at load as W + (alpha_i / rank_i) * B_i @ A_i. Their average,
W + (1/n) * sum_i (alpha_i / rank_i) * B_i @ A_i, is itself one low-rank adapter: stack the A_i
as rows and the B_i as columns, each B_i scaled by (alpha_i / rank_i) / n, and give the stack
alpha = rank so that its own scale is 1. With --weights the average is weighted: input i's B_i
is scaled by (alpha_i / rank_i) * w_i / sum(w) instead. calmline merges adapters into the weights
when it loads them, so the soup serves at exactly the cost of one adapter set; only the file grows
(n times).

Why average: runs of one recipe with different seeds differ by as much as recipes do (model card,
experiments 20 and 22); averaging fine-tuned weights that share a starting point tends to rank
better than either run alone (Wortsman et al. 2022, "Model soups", arXiv:2203.05482).
Why weight: an equal average of many encoders dilutes what only the newest was taught (model card,
experiment 43d: bare one-word insults the newest encoder scores 0.6-0.98 fall to 0.03-0.4 in a
five-way soup), while the older encoders are what keeps ordinary conversation turns right.

Only the adapters are written (and soup.json, what went in): `calmline train --adapters OUT` fits
the served head and thresholds on the soup's own features.
"""
import argparse, json, os, sys

import numpy as np
from safetensors.numpy import load_file, save_file


def read_adapters(folder):
    with open(os.path.join(folder, "adapters.json")) as f:
        settings = json.load(f)
    return settings, load_file(os.path.join(folder, "adapters.safetensors"))


def soup(adapter_sets, weights=None):
    """adapter_sets: [(settings, tensors)]; weights: one positive number per set (default equal).
    Returns (settings, tensors) of the weighted average adapter."""
    first_layers = {s["first_layer"] for s, _ in adapter_sets}
    if len(first_layers) != 1:
        raise SystemExit(f"the inputs adapt different layers (first_layer {sorted(first_layers)})")
    names = [set(t) for _, t in adapter_sets]
    if any(n != names[0] for n in names):
        raise SystemExit("the inputs adapt different projections")
    weights = [1.0] * len(adapter_sets) if weights is None else [float(w) for w in weights]
    if len(weights) != len(adapter_sets) or any(not w > 0 for w in weights):
        raise SystemExit(f"--weights needs one positive number per input ({len(adapter_sets)}), got {weights}")
    total = sum(weights)
    out = {}
    for a_name in sorted(k for k in names[0] if k.endswith(".lora_a")):
        b_name = a_name[: -len("lora_a")] + "lora_b"
        a_parts, b_parts = [], []
        for (settings, tensors), weight in zip(adapter_sets, weights):
            scale = settings["alpha"] / settings["rank"] * weight / total
            a_parts.append(tensors[a_name].astype(np.float32))
            b_parts.append(tensors[b_name].astype(np.float32) * np.float32(scale))
        out[a_name] = np.ascontiguousarray(np.concatenate(a_parts, axis=0))
        out[b_name] = np.ascontiguousarray(np.concatenate(b_parts, axis=1))
    rank = sum(s["rank"] for s, _ in adapter_sets)
    return {"rank": rank, "alpha": float(rank), "first_layer": first_layers.pop()}, out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="folder to write adapters.safetensors, adapters.json and soup.json")
    p.add_argument("--weights", help="comma-separated positive weights, one per input (default: all equal)")
    p.add_argument("inputs", nargs="+", help="folders written by trainer/finetune.py")
    args = p.parse_args(argv)
    if len(args.inputs) < 2:
        raise SystemExit("a soup needs at least two adapter sets")
    try:
        weights = None if args.weights is None else [float(w) for w in args.weights.split(",")]
    except ValueError:
        raise SystemExit(f"--weights: not a comma-separated list of numbers: {args.weights!r}")
    settings, tensors = soup([read_adapters(folder) for folder in args.inputs], weights)
    os.makedirs(args.out, exist_ok=True)
    save_file(tensors, os.path.join(args.out, "adapters.safetensors"))
    with open(os.path.join(args.out, "adapters.json"), "w") as f:
        json.dump(settings, f, indent=2)
        f.write("\n")
    with open(os.path.join(args.out, "soup.json"), "w") as f:
        record = {"inputs": args.inputs, "rank": settings["rank"]}
        if weights is not None:
            record["weights"] = weights
        json.dump(record, f, indent=2)
        f.write("\n")
    print(f"{len(args.inputs)} adapter sets averaged into {args.out} (rank {settings['rank']})", file=sys.stderr)


if __name__ == "__main__":
    main()
