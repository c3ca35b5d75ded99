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

Why --max-rank: a soup's rank is the sum of its inputs' ranks, so each round of "fine-tune from the
soup, soup again" would double the committed file. Runs that start from one soup change it
little, so the averaged delta is nearly low-rank (judgement-93's rank-128 soup keeps all but
0.004% of each projection's energy at rank 64). --max-rank R replaces each projection's delta by
its best rank-R approximation (truncated SVD, Eckart-Young) and records in soup.json the largest
share of a projection's energy (squared Frobenius norm) that the truncation dropped.

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


def truncate(settings, tensors, max_rank):
    """The best rank-max_rank adapter for each projection of a scale-1 adapter set (alpha = rank,
    as soup() writes). Returns (settings, tensors, largest share of a delta's energy dropped)."""
    if max_rank < 1:
        raise SystemExit(f"--max-rank must be at least 1, got {max_rank}")
    if max_rank >= settings["rank"]:
        return settings, tensors, 0.0
    out, dropped = {}, 0.0
    for a_name in sorted(k for k in tensors if k.endswith(".lora_a")):
        b_name = a_name[: -len("lora_a")] + "lora_b"
        delta = tensors[b_name].astype(np.float64) @ tensors[a_name].astype(np.float64)
        u, s, vt = np.linalg.svd(delta, full_matrices=False)
        energy = float(np.sum(s**2))
        if energy > 0:
            dropped = max(dropped, float(np.sum(s[max_rank:] ** 2)) / energy)
        # Split each singular value evenly between the factors so that A and B keep similar scales.
        root = np.sqrt(s[:max_rank])
        out[a_name] = np.ascontiguousarray((root[:, None] * vt[:max_rank]).astype(np.float32))
        out[b_name] = np.ascontiguousarray((u[:, :max_rank] * root[None, :]).astype(np.float32))
    return {**settings, "rank": max_rank, "alpha": float(max_rank)}, out, dropped


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="folder to write adapters.safetensors, adapters.json and soup.json")
    p.add_argument("--weights", help="comma-separated positive weights, one per input (default: all equal)")
    p.add_argument("--max-rank", type=int, help="keep each projection's best rank-R approximation (truncated SVD) instead of the stacked rank")
    p.add_argument("inputs", nargs="+", help="folders written by trainer/finetune.py")
    args = p.parse_args(argv)
    if len(args.inputs) < 2:
        raise SystemExit("a soup needs at least two adapter sets")
    try:
        weights = None if args.weights is None else [float(w) for w in args.weights.split(",")]
    except ValueError:
        raise SystemExit(f"--weights: not a comma-separated list of numbers: {args.weights!r}")
    settings, tensors = soup([read_adapters(folder) for folder in args.inputs], weights)
    dropped = None
    if args.max_rank is not None:
        settings, tensors, dropped = truncate(settings, tensors, args.max_rank)
    os.makedirs(args.out, exist_ok=True)
    save_file(tensors, os.path.join(args.out, "adapters.safetensors"))
    with open(os.path.join(args.out, "adapters.json"), "w") as f:
        json.dump(settings, f, indent=2)
        f.write("\n")
    with open(os.path.join(args.out, "soup.json"), "w") as f:
        record = {"inputs": args.inputs, "rank": settings["rank"]}
        if weights is not None:
            record["weights"] = weights
        if dropped is not None:
            record["max_rank"] = args.max_rank
            record["largest_energy_dropped"] = dropped
        json.dump(record, f, indent=2)
        f.write("\n")
    truncated = "" if dropped is None else f"; at most {dropped:.2e} of a projection's energy dropped"
    print(f"{len(args.inputs)} adapter sets averaged into {args.out} (rank {settings['rank']}{truncated})", file=sys.stderr)


if __name__ == "__main__":
    main()
