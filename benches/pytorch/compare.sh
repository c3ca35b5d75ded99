#!/usr/bin/env bash
# Side by side (issue 7): calmline and the PyTorch baseline (benches/pytorch/server.py) on the
# same weights, on this machine, in one run, driven by the same load generator (`calmline bench`,
# Analyze over loopback): 1 caller (latency of one short turn at low load) and 32 callers
# (batched throughput). One server runs at a time. Results: $OUT/*.json and a table on stdout.
#
#   benches/pytorch/compare.sh                       # SECONDS_PER=30 CONCURRENCY="1 32"
set -euo pipefail
cd "$(dirname "$0")/../.."
VENV=${VENV:-.venv-pytorch}
OUT=${OUT:-target/pytorch-compare}
SECONDS_PER=${SECONDS_PER:-30}
CONCURRENCY=${CONCURRENCY:-"1 32"}
CALMLINE_PORT=50161 PYTORCH_PORT=50162

if [ ! -f "$VENV/.installed" ] || [ benches/pytorch/requirements.txt -nt "$VENV/.installed" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check -r benches/pytorch/requirements.txt
  touch "$VENV/.installed"
fi
./models/fetch.sh
cargo build --release
mkdir -p "$OUT"

wait_for() { # log file, line that says it is ready
  for _ in $(seq 1 600); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.2; done
  echo "not ready: $1"; cat "$1"; exit 1
}
drive() { # name, port
  for c in $CONCURRENCY; do
    ./target/release/calmline bench --target "http://127.0.0.1:$2" --rpc analyze --concurrency "$c" --seconds "$SECONDS_PER" --json "$OUT/$1-c$c.json"
  done
}

./target/release/calmline serve --listen "127.0.0.1:$CALMLINE_PORT" --metrics-listen 127.0.0.1:0 >"$OUT/calmline.log" 2>&1 &
server=$!
wait_for "$OUT/calmline.log" " SERVING"
drive calmline "$CALMLINE_PORT"
kill -TERM "$server"; wait "$server" || true

"$VENV/bin/python" benches/pytorch/server.py --listen "127.0.0.1:$PYTORCH_PORT" >"$OUT/pytorch.log" 2>&1 &
server=$!
wait_for "$OUT/pytorch.log" "pytorch baseline serving"
drive pytorch "$PYTORCH_PORT"
kill -TERM "$server"; wait "$server" || true

"$VENV/bin/python" - "$OUT" $CONCURRENCY <<'EOF'
import json, sys
out, levels = sys.argv[1], sys.argv[2:]
print(f"{'callers':>7} {'server':>9} {'turns/s':>8} {'p50 ms':>7} {'p95 ms':>7} {'p99 ms':>7} {'errors':>7}  ratio")
for c in levels:
    r = {s: json.load(open(f"{out}/{s}-c{c}.json")) for s in ("calmline", "pytorch")}
    for s in ("calmline", "pytorch"):
        x = r[s]
        ratio = x["per_second"] / r["pytorch"]["per_second"]
        print(f"{c:>7} {s:>9} {x['per_second']:8.1f} {x['p50_ms']:7.1f} {x['p95_ms']:7.1f} {x['p99_ms']:7.1f} {sum(x['errors'].values()):7d}  {ratio:.2f}x")
EOF
