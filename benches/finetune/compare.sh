#!/usr/bin/env bash
# Side by side (issue 16): the fine-tuning step rate of candle's trainer (`calmline finetune`, the
# Rust trainer until 2026-12-03) and of trainer/finetune.py (PyTorch), on the same recipe, the same
# exported examples and this machine, in one run, one trainer at a time. The recipe is experiment
# 5's: LoRA rank 8 on layers 7-12 over cached layer-6 states, batch 32 of texts cut to 64 tokens,
# AdamW with the same schedule, the project's turns seen 3x per epoch. Each trainer runs MINUTES of
# steps; the rates are texts per second over the steps (caching the lower layers is timed apart).
#
#   benches/finetune/compare.sh            # CAP=300 MINUTES=4 PRECISIONS="f32 bf16"; results in target/finetune-compare/
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-target/finetune-compare}
CAP=${CAP:-300}
MINUTES=${MINUTES:-4}
VENV=${VENV:-.venv-train}
# f32, and bf16 (torch.autocast: the products in bfloat16) where the CPU has AVX512_BF16
PRECISIONS=${PRECISIONS:-f32 bf16}
mkdir -p "$OUT"
./models/fetch.sh
cargo build --release
data=(--cap-train "$CAP" --cap-dev 50 --cap-test 50)
./target/release/calmline export-examples "${data[@]}" --out "$OUT/examples.jsonl" 2>/dev/null

if ./target/release/calmline finetune --help >/dev/null 2>&1; then
  # candle: its log prints "step N/2000: masked BCE … (R texts/s, …)" every 20 steps; it is stopped
  # once its steps end (its dev/test scoring afterwards is not part of the comparison).
  ./target/release/calmline finetune --models models/baseline --base models/base "${data[@]}" --first-layer 6 \
    --steps 2000 --batch 32 --indomain-repeat 3 --time-limit-minutes "$MINUTES" --out "$OUT/candle" >"$OUT/candle.log" 2>&1 &
  pid=$!
  until grep -q "epochs of" "$OUT/candle.log" 2>/dev/null || ! kill -0 "$pid" 2>/dev/null; do sleep 2; done
  kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true
  candle_rate=$(tr '\r' '\n' <"$OUT/candle.log" | grep -o "([0-9.]* texts/s" | tail -1 | tr -d '(' | cut -d' ' -f1 || true)
else
  candle_rate="(candle's trainer is gone; run this script at cc5510c (with the trainer venv) for its row)"
fi

rates=()
for precision in $PRECISIONS; do
  "$VENV/bin/python" trainer/finetune.py --examples "$OUT/examples.jsonl" --base models/base --init-head models/baseline \
    --first-layer 6 --steps 2000 --batch 32 --repeat calmline_indomain=3 --precision "$precision" \
    --time-limit-minutes "$MINUTES" --out "$OUT/pytorch-$precision" >"$OUT/pytorch-$precision.log" 2>&1
  rates+=("$(python3 -c "import json;l=json.load(open('$OUT/pytorch-$precision/train-log.json'));print(round(l['texts_per_second'],1), '|', round(l['cache_seconds']), 's |', round(l['peak_rss_mb']), 'MB')")")
done

echo "| trainer | steps: texts/s over $MINUTES min | caching layers 0-6 | peak RSS |"
echo "|---|---:|---:|---:|"
echo "| candle (calmline finetune) | $candle_rate | | |"
set -- $PRECISIONS
for rate in "${rates[@]}"; do
  echo "| PyTorch (trainer/finetune.py --precision $1) | $rate |"
  shift
done
