#!/usr/bin/env bash
# One caller's latency for flagged short turns (which get evidence spans) and for turns flagged
# with frustration only (which get none), against `calmline serve` with and without --no-spans,
# in one run (BENCHMARKS.md, "Evidence spans"). Usage: benches/spans_latency.sh [seconds]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-10}
bin=${CALMLINE_BIN:-target/release/calmline}
[ -x "$bin" ] || cargo build --release --locked
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
lines() { for t in "$@"; do printf '{"text": "%s"}\n' "$t"; done; }
lines "You are a useless idiot." "Maga egy hülye, semmire kellő alak." "אתה אידיוט מטומטם ועצלן" "Eres un idiota inútil." >"$work/flagged.jsonl"
lines "I have been waiting for two weeks and nobody has called me back." "Már harmadszor hívom önöket, és még mindig nem működik." >"$work/frustrated.jsonl"
port=$((40000 + RANDOM % 20000))
for server in spans no-spans; do
  flags=()
  [ "$server" = no-spans ] && flags=(--no-spans)
  "$bin" serve --listen "127.0.0.1:$port" "${flags[@]}" 2>"$work/$server.log" &
  until grep -qw SERVING "$work/$server.log"; do
    kill -0 %1 2>/dev/null || { cat "$work/$server.log" >&2; exit 1; }
    sleep 0.2
  done
  sed 's/\x1b\[[0-9;]*m//g' "$work/$server.log" | grep -o 'kernel=.*' | head -1
  for texts in flagged frustrated; do
    printf '%s, %s: ' "$server" "$texts"
    "$bin" bench --target "http://127.0.0.1:$port" --texts "$work/$texts.jsonl" --seconds "$seconds" --concurrency 1 2>&1 | tail -1
  done
  kill %1
  wait %1 || true
done
