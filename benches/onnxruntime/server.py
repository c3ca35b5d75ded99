#!/usr/bin/env python3
"""The ONNX Runtime baseline of the side-by-side benchmark: the PyTorch baseline
(benches/pytorch/server.py) with its encoder run by ONNX Runtime instead of torch.

Everything but the encoder is the PyTorch baseline's own code, imported from it: the model built
from the project's blob, adapters and head; tokenization; mean pooling; the head and thresholds;
the batcher (up to --max-batch texts within --max-wait-ms) and the gRPC service. The encoder
(`Encoder` there: ids and mask in; last layer and mean of layers 9-11 out) is exported once with
torch.onnx into --cache, with dynamic batch and sequence axes, and for --precision int8 quantized
dynamically; the files are named by a hash of the weights and of both scripts, so a change to
either exports again.

    benches/pytorch/compare.sh        # SERVERS="ort-f32 ort-int8" runs only these two
    python benches/onnxruntime/server.py --precision int8 --listen 127.0.0.1:50164 [--check "some text" ...]
"""
import glob, hashlib, importlib.util, os, sys

import numpy as np
import onnxruntime as ort
import torch
from onnxruntime.quantization import QuantType, quantize_dynamic

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
# Loaded by path under its own name: both files are called server.py.
_spec = importlib.util.spec_from_file_location("pytorch_baseline", os.path.join(ROOT, "benches", "pytorch", "server.py"))
pytorch_baseline = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(pytorch_baseline)


def cache_key(models):
    """Hash of what the exported graph depends on: the blob, the adapters, and the code."""
    h = hashlib.sha256()
    for path in (os.path.join(models, "base", "e5-small-q4.bin"), os.path.join(models, "adapters.safetensors"),
                 os.path.join(models, "adapters.json"), _spec.origin, os.path.abspath(__file__)):
        if os.path.exists(path):
            h.update(open(path, "rb").read())
    h.update(f"torch {torch.__version__} onnxruntime {ort.__version__}".encode())
    return h.hexdigest()[:16]


def export(encoder, path):
    """The torch Encoder to ONNX at `path`. The TorchScript exporter (dynamo=False) traces BERT
    as it is and needs no onnxscript; batch and sequence stay dynamic."""
    ids = torch.ones((2, 8), dtype=torch.long)
    # One row padded: a tracer records only the branch it takes, and transformers may drop an
    # all-ones mask (it would then be missing from the graph).
    mask = torch.tensor([[1] * 8, [1] * 5 + [0] * 3])
    axes = {0: "batch", 1: "tokens"}
    tmp = path + ".part"
    torch.onnx.export(encoder, (ids, mask), tmp, dynamo=False, opset_version=17,
                      input_names=["input_ids", "attention_mask"], output_names=["last", "upper"],
                      dynamic_axes={"input_ids": axes, "attention_mask": axes, "last": axes, "upper": axes})
    os.replace(tmp, path)


def quantize(f32_path, path):
    """Dynamic int8 quantization: int8 weights, per output channel, uint8 activations quantized at
    run time (U8S8). The setting ONNX Runtime's quantization guide recommends for transformers on
    x86 CPUs (onnxruntime.ai/docs/performance/model-optimizations/quantization.html: dynamic for
    transformer models, U8S8 the default on x86-64), and what sentence-transformers'
    export_dynamic_quantized_onnx_model and optimum's avx512_vnni config produce. Only MatMuls with
    a constant weight (MatMulConstBOnly, the dynamic default) and the embedding Gathers are quantized."""
    tmp = path + ".part"
    quantize_dynamic(f32_path, tmp, weight_type=QuantType.QInt8, per_channel=True)
    os.replace(tmp, path)


class OrtScorer(pytorch_baseline.Scorer):
    """The PyTorch baseline's scorer with `encode` run by an ONNX Runtime session."""

    def __init__(self, models, precision, cache, threads):
        super().__init__(models)
        os.makedirs(cache, exist_ok=True)
        key = cache_key(models)
        for stale in glob.glob(os.path.join(cache, "encoder-*.onnx")):  # ~0.5 GB each: keep only this key's
            if f"-{key}-" not in stale:
                os.remove(stale)
        f32 = os.path.join(cache, f"encoder-{key}-f32.onnx")
        if not os.path.exists(f32):
            print(f"exporting the encoder to {f32}", file=sys.stderr, flush=True)
            export(self.encoder, f32)
        self.path = f32
        if precision == "int8":
            self.path = os.path.join(cache, f"encoder-{key}-int8.onnx")
            if not os.path.exists(self.path):
                print(f"quantizing it to {self.path}", file=sys.stderr, flush=True)
                quantize(f32, self.path)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads  # as the PyTorch baseline's torch.set_num_threads
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(self.path, options, providers=["CPUExecutionProvider"])
        self.encoder = None  # the torch weights are not used from here on

    def encode(self, ids, mask):
        last, upper = self.session.run(["last", "upper"], {"input_ids": ids.numpy(), "attention_mask": mask.numpy()})
        return torch.from_numpy(last), torch.from_numpy(upper)


def main():
    ap = pytorch_baseline.arguments()
    ap.set_defaults(listen="127.0.0.1:50164")
    ap.add_argument("--precision", choices=("f32", "int8"), default="int8")
    ap.add_argument("--cache", default=os.path.join(ROOT, "target", "onnxruntime"), help="where the exported models are kept")
    args = ap.parse_args()
    # torch runs only the pooling and the head here (microseconds): one thread, so that it does
    # not compete with ONNX Runtime's pool for the cores.
    torch.set_num_threads(1)
    scorer = OrtScorer(args.models, args.precision, args.cache, args.threads)
    if args.check:
        return pytorch_baseline.check(scorer, args)
    name = f"onnxruntime {args.precision}"
    pytorch_baseline.serve(scorer, args, name, f"onnxruntime {ort.__version__}, {args.threads} threads, {os.path.basename(scorer.path)}")


if __name__ == "__main__":
    main()
