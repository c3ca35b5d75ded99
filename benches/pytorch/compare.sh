#!/usr/bin/env bash
# Side by side (issue 7): calmline and its baselines on the same weights, on this machine, in one
# run, driven by the same load generator (`calmline bench`, Analyze over loopback): 1 caller
# (latency of one short turn at low load) and 32 callers (batched throughput). One server runs at
# a time. The servers (SERVERS, in this order by default):
#   calmline-f32, calmline-int8   `calmline serve --precision f32|int8` (int8 needs AVX-512 VNNI)
#   calmline   `calmline serve $CALMLINE_ARGS` (its default precision: int8 where the CPU has VNNI)
#   pytorch    benches/pytorch/server.py (torch + transformers), in $VENV
#   ort-f32    benches/onnxruntime/server.py --precision f32 (the same encoder exported to ONNX)
#   ort-int8   benches/onnxruntime/server.py --precision int8 (dynamically quantized), in $VENV_ONNX
# Results: $OUT/*.json and a table on stdout, with ratios against RATIO_TO (ort-int8, or the last
# server run when it is not among them).
#
#   benches/pytorch/compare.sh                       # SECONDS_PER=30 CONCURRENCY="1 32", all five
#   NO_BUILD=1 SERVERS="ort-f32 ort-int8" SECONDS_PER=3 CONCURRENCY=1 benches/pytorch/compare.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
SERVERS=${SERVERS:-"calmline-f32 calmline-int8 pytorch ort-f32 ort-int8"}
VENV=${VENV:-.venv-pytorch}
VENV_ONNX=${VENV_ONNX:-.venv-onnx}
OUT=${OUT:-target/pytorch-compare}
SECONDS_PER=${SECONDS_PER:-30}
CONCURRENCY=${CONCURRENCY:-"1 32"}
CALMLINE_ARGS=${CALMLINE_ARGS:-}
RATIO_TO=${RATIO_TO:-ort-int8}

setup_venv() { # venv, requirements file, files it includes: (re)install when any is newer than the last install
  local venv=$1 reqs=$2 f stale=
  [ -f "$venv/.installed" ] || stale=1
  for f in "${@:2}"; do [ "$f" -nt "$venv/.installed" ] && stale=1; done
  if [ -n "$stale" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$reqs"
    touch "$venv/.installed"
  fi
}
case " $SERVERS " in *" pytorch "*) setup_venv "$VENV" benches/pytorch/requirements.txt ;; esac
case " $SERVERS " in *" ort-"*) setup_venv "$VENV_ONNX" benches/onnxruntime/requirements.txt benches/pytorch/requirements.txt ;; esac
./models/fetch.sh
[ -n "${NO_BUILD:-}" ] || cargo build --release  # NO_BUILD=1: use the target/release/calmline there is
mkdir -p "$OUT"

wait_for() { # pid, log file, line that says it is ready (the ONNX servers export on first start)
  for _ in $(seq 1 1500); do
    grep -q "$3" "$2" 2>/dev/null && return 0
    kill -0 "$1" 2>/dev/null || { echo "exited before ready: $2"; cat "$2"; exit 1; }
    sleep 0.2
  done
  echo "not ready: $2"; cat "$2"; kill -TERM "$1"; exit 1
}

port=50161
for s in $SERVERS; do
  case $s in
    calmline) cmd=(./target/release/calmline serve --listen "127.0.0.1:$port" --metrics-listen 127.0.0.1:0 $CALMLINE_ARGS); ready=" SERVING" ;;
    calmline-f32 | calmline-int8) cmd=(./target/release/calmline serve --listen "127.0.0.1:$port" --metrics-listen 127.0.0.1:0 --precision "${s#calmline-}"); ready=" SERVING" ;;
    pytorch) cmd=("$VENV/bin/python" benches/pytorch/server.py --listen "127.0.0.1:$port"); ready="pytorch baseline serving" ;;
    ort-f32 | ort-int8) cmd=("$VENV_ONNX/bin/python" benches/onnxruntime/server.py --precision "${s#ort-}" --listen "127.0.0.1:$port"); ready="baseline serving" ;;
    *) echo "unknown server: $s (calmline, calmline-f32, calmline-int8, pytorch, ort-f32, ort-int8)"; exit 2 ;;
  esac
  "${cmd[@]}" >"$OUT/$s.log" 2>&1 &
  server=$!
  wait_for "$server" "$OUT/$s.log" "$ready"
  for c in $CONCURRENCY; do
    ./target/release/calmline bench --target "http://127.0.0.1:$port" --rpc analyze --concurrency "$c" --seconds "$SECONDS_PER" --json "$OUT/$s-c$c.json"
  done
  kill -TERM "$server"; wait "$server" || true
  port=$((port + 1))
done

python3 - "$OUT" "$RATIO_TO" "$SERVERS" $CONCURRENCY <<'EOF'
import json, sys
out, ratio_to, servers, levels = sys.argv[1], sys.argv[2], sys.argv[3].split(), sys.argv[4:]
if ratio_to not in servers:
    ratio_to = servers[-1]
print(f"{'callers':>7} {'server':>13} {'turns/s':>8} {'p50 ms':>7} {'p95 ms':>7} {'p99 ms':>7} {'errors':>7}  vs {ratio_to}")
for c in levels:
    r = {s: json.load(open(f"{out}/{s}-c{c}.json")) for s in servers}
    for s in servers:
        x = r[s]
        ratio = x["per_second"] / r[ratio_to]["per_second"]
        print(f"{c:>7} {s:>13} {x['per_second']:8.1f} {x['p50_ms']:7.1f} {x['p95_ms']:7.1f} {x['p99_ms']:7.1f} {sum(x['errors'].values()):7d}  {ratio:.2f}x")
EOF
