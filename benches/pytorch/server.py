#!/usr/bin/env python3
"""The PyTorch baseline of issue 7: calmline.v1.Triage/Analyze served by PyTorch and transformers
on the same weights, so `calmline bench` can drive both servers the same way.

The same work per text as calmline: tokenize `query: <text>` with the same tokenizer.json; the
e5-small BERT (transformers' BertModel, float32) built from the same blob (dequantised by the
project's independent reader, tools/reference_embeddings.py) with the same LoRA adapters merged
in; mean pooling of the last layer and of layers 9-11; the same linear head and thresholds.
Requests are batched like calmline's server does: up to --max-batch texts, waiting at most
--max-wait-ms for more, padded to the longest (transformers' usual way). The policy ladder is
not run (microseconds in calmline; scores and flags are returned).

    benches/pytorch/compare.sh        # sets up the virtualenv and runs the side-by-side bench
    python benches/pytorch/server.py --listen 127.0.0.1:50162 [--check "some text" ...]

benches/onnxruntime/server.py imports this file and swaps only the encoder (`Scorer.encode`).
"""
import argparse, importlib, json, os, queue, sys, tempfile, threading, time
from concurrent import futures

import grpc
import numpy as np
import torch
from grpc_tools import protoc
from safetensors.numpy import load_file
from tokenizers import Tokenizer
from transformers import BertConfig, BertModel

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tools"))
from reference_embeddings import read_blob  # noqa: E402  (the project's own numpy blob reader)

UPPER = (9, 10, 11)  # hidden_states indices of layers 9-11 (calmline's UPPER_LAYERS 8..11)


def stubs():
    out = tempfile.mkdtemp(prefix="calmline-pytorch-")
    proto_dir = os.path.join(ROOT, "proto")
    rc = protoc.main(["grpc_tools.protoc", f"-I{proto_dir}", f"--python_out={out}", f"--grpc_python_out={out}",
                      os.path.join(proto_dir, "calmline/v1/triage.proto")])
    if rc != 0:
        sys.exit(f"protoc failed with {rc}")
    sys.path.insert(0, out)
    return importlib.import_module("calmline.v1.triage_pb2"), importlib.import_module("calmline.v1.triage_pb2_grpc")


def build_model(models):
    cfg, t = read_blob(os.path.join(models, "base", "e5-small-q4.bin"))
    h = cfg["hidden"]
    config = BertConfig(vocab_size=t["emb.word"].size // h, hidden_size=h, num_hidden_layers=cfg["layers"],
                        num_attention_heads=cfg["heads"], intermediate_size=cfg["ffn"], hidden_act="gelu",
                        max_position_embeddings=t["emb.pos"].size // h, type_vocab_size=t["emb.type"].size // h,
                        layer_norm_eps=cfg["eps"])
    adapters_path = os.path.join(models, "adapters.safetensors")
    if os.path.exists(adapters_path):
        adapters = load_file(adapters_path)
        meta = json.load(open(os.path.join(models, "adapters.json")))
        scale = meta["alpha"] / meta["rank"]
        for name in {k.rsplit(".", 1)[0] for k in adapters}:  # "l10.ao"
            out_dim, in_dim = adapters[name + ".lora_b"].shape[0], adapters[name + ".lora_a"].shape[1]
            w = t[name + ".w"].reshape(out_dim, in_dim)
            t[name + ".w"] = (w + scale * adapters[name + ".lora_b"].astype(np.float64) @ adapters[name + ".lora_a"]).reshape(-1)
    names = {"q": "attention.self.query", "k": "attention.self.key", "v": "attention.self.value",
             "ao": "attention.output.dense", "aln": "attention.output.LayerNorm", "fi": "intermediate.dense",
             "fo": "output.dense", "oln": "output.LayerNorm"}
    state = {
        "embeddings.word_embeddings.weight": t["emb.word"].reshape(-1, h),
        "embeddings.position_embeddings.weight": t["emb.pos"].reshape(-1, h),
        "embeddings.token_type_embeddings.weight": t["emb.type"].reshape(-1, h),
        "embeddings.LayerNorm.weight": t["emb.ln.w"], "embeddings.LayerNorm.bias": t["emb.ln.b"],
    }
    for i in range(cfg["layers"]):
        for short, long in names.items():
            w = t[f"l{i}.{short}.w"]
            if short not in ("aln", "oln"):
                rows = cfg["ffn"] if short == "fi" else h
                w = w.reshape(rows, -1)
            state[f"encoder.layer.{i}.{long}.weight"] = w
            state[f"encoder.layer.{i}.{long}.bias"] = t[f"l{i}.{short}.b"]
    model = BertModel(config, add_pooling_layer=False)
    missing, unexpected = model.load_state_dict({k: torch.tensor(np.asarray(v), dtype=torch.float32) for k, v in state.items()}, strict=False)
    missing = [m for m in missing if "position_ids" not in m and "token_type_ids" not in m]
    if missing or unexpected:
        sys.exit(f"weights do not fit: missing {missing}, unexpected {unexpected}")
    head = load_file(os.path.join(models, "head.safetensors"))
    meta = json.load(open(os.path.join(models, "head.json")))
    thresholds = [meta["thresholds"][label] for label in meta["labels"]]
    return model.eval(), torch.tensor(head["weight"]), torch.tensor(head["bias"]), thresholds, meta["model_version"]


class Encoder(torch.nn.Module):
    """The BERT as a module from token ids to the two layer outputs the head's features pool: the
    last layer and the mean of layers 9-11 ([batch, tokens, hidden] each). calmline also pools a
    'stable' layer (6), but only for stable_embed, not for the head, so it is not computed here.
    A module of its own so that benches/onnxruntime can export exactly this part."""

    def __init__(self, bert):
        super().__init__()
        self.bert = bert

    def forward(self, input_ids, attention_mask):
        out = self.bert(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=torch.zeros_like(input_ids),
                        output_hidden_states=True)
        upper = sum(out.hidden_states[i] for i in UPPER) / len(UPPER)
        return out.hidden_states[-1], upper


class Scorer:
    """Texts in, label probabilities out, in batches."""

    def __init__(self, models):
        bert, self.w, self.b, self.thresholds, self.version = build_model(models)
        self.encoder = Encoder(bert).eval()
        self.tokenizer = Tokenizer.from_file(os.path.join(models, "base", "tokenizer.json"))
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(512)

    def encode(self, ids, mask):
        """(last layer, mean of layers 9-11) for padded ids and their mask; other runtimes override this."""
        return self.encoder(ids, mask)

    @torch.inference_mode()
    def scores(self, texts):
        encodings = self.tokenizer.encode_batch(["query: " + t for t in texts])
        longest = max(len(e.ids) for e in encodings)
        ids = torch.ones((len(texts), longest), dtype=torch.long)  # <pad> = 1
        mask = torch.zeros((len(texts), longest), dtype=torch.long)
        for row, e in enumerate(encodings):
            ids[row, :len(e.ids)] = torch.tensor(e.ids)
            mask[row, :len(e.ids)] = 1
        last, upper = self.encode(ids, mask)
        m = mask.unsqueeze(-1).float()
        pool = lambda x: torch.nn.functional.normalize((x * m).sum(1) / m.sum(1), dim=-1)
        features = torch.cat([pool(last), pool(upper)], dim=-1)
        return torch.sigmoid(features @ self.w.T + self.b).tolist()


class Batcher(threading.Thread):
    def __init__(self, scorer, max_batch, max_wait):
        super().__init__(daemon=True)
        self.scorer, self.max_batch, self.max_wait = scorer, max_batch, max_wait
        self.requests = queue.Queue()

    def submit(self, text):
        done = futures.Future()
        self.requests.put((text, done))
        return done.result()

    def run(self):
        while True:
            batch = [self.requests.get()]
            deadline = time.monotonic() + self.max_wait
            while len(batch) < self.max_batch:
                remaining = deadline - time.monotonic()
                try:
                    batch.append(self.requests.get(timeout=max(remaining, 0)) if remaining > 0 else self.requests.get_nowait())
                except queue.Empty:
                    break
            try:
                results = self.scorer.scores([text for text, _ in batch])
                for (_, done), scores in zip(batch, results):
                    done.set_result(scores)
            except Exception as e:  # a failed batch fails its callers, not the server
                for _, done in batch:
                    done.set_exception(e)


def arguments():
    """The command line both baselines share (benches/onnxruntime adds its own flags to it)."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--listen", default="127.0.0.1:50162")
    ap.add_argument("--models", default=os.path.join(ROOT, "models"))
    ap.add_argument("--max-batch", type=int, default=32)
    ap.add_argument("--max-wait-ms", type=float, default=2.0)
    ap.add_argument("--threads", type=int, default=int(os.environ.get("TORCH_THREADS", os.cpu_count() or 2)))
    ap.add_argument("--check", action="append", metavar="TEXT", help="print the scores of this text (one JSON line each; repeatable) and exit")
    return ap


def check(scorer, args):
    labels = json.load(open(os.path.join(args.models, "head.json")))["labels"]
    for text in args.check:  # one text per batch, as a lone turn is scored
        print(json.dumps(dict(zip(labels, scorer.scores([text])[0]))), flush=True)


def serve(scorer, args, name, detail):
    """Analyze and GetInfo over gRPC until killed; `name` tags model_version and the ready line."""
    pb, pb_grpc = stubs()
    batcher = Batcher(scorer, args.max_batch, args.max_wait_ms / 1000)
    batcher.start()

    class Triage(pb_grpc.TriageServicer):
        def Analyze(self, request, context):
            started = time.monotonic()
            text = request.turn.text
            if not text.strip():
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, "turn: text is empty")
            scores = batcher.submit(text)
            label_scores = [pb.LabelScore(label=i + 1, score=s, threshold=t, flagged=s >= t)
                            for i, (s, t) in enumerate(zip(scores, scorer.thresholds))]
            assessment = pb.Assessment(speaker=request.turn.speaker, scores=label_scores,
                                       flags=[x.label for x in label_scores if x.flagged], model_version=f"{scorer.version} ({name})",
                                       timings=pb.Timings(total_us=int((time.monotonic() - started) * 1e6)))
            return pb.AnalyzeResponse(assessment=assessment, state=request.state)

        def GetInfo(self, request, context):
            return pb.GetInfoResponse(model_version=f"{scorer.version} ({name})")

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=128))
    pb_grpc.add_TriageServicer_to_server(Triage(), server)
    server.add_insecure_port(args.listen)
    server.start()
    scorer.scores(["warm-up", "Hello, I need help with my order."])
    print(f"{name} baseline serving on {args.listen} ({detail})", flush=True)
    server.wait_for_termination()


def main():
    args = arguments().parse_args()
    torch.set_num_threads(args.threads)
    scorer = Scorer(args.models)
    if args.check:
        return check(scorer, args)
    serve(scorer, args, "pytorch", f"torch {torch.__version__}, {args.threads} threads")


if __name__ == "__main__":
    main()
