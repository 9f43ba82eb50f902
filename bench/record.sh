#!/usr/bin/env bash
# Recording cost, measured in one run against the same echo upstream:
#   proxy, 64 connections ping-pong, 64 B, SQLite recording (--record drop)
#     vs the same with --no-store                          target: >= 0.85x
#   a sustained 20 000 msgs/s for DUR_RATE seconds (default 30) through the proxy with
#   SQLite recording: rows dropped by the recorder        target: 0
# Plus the store writer alone: message rows/s into SQLite (and PostgreSQL when
# WSGATE_TEST_POSTGRES is set, or start one with `eval "$(scripts/pg-start)"`).
# Usage: bench/record.sh   (DUR seconds per throughput run, default 5; ROUNDS, default 3)
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
DUR=${DUR:-5}
ROUNDS=${ROUNDS:-3}
DUR_RATE=${DUR_RATE:-30}
cargo build --release --quiet -p wsgate -p wsgate-echo-server
cargo build --release --quiet -p wsgate-store --example store_bench
W=target/release/wsgate

echo "== store writer alone (batches of 4096, 64-256 B payloads)"
target/release/examples/store_bench "sqlite://$OUT/writer.db" 1000000
if [ -n "${WSGATE_TEST_POSTGRES:-}" ]; then target/release/examples/store_bench "$WSGATE_TEST_POSTGRES" 500000; fi

"${LOAD[@]}" target/release/wsgate-echo-server 127.0.0.1:0 > "$OUT/echo.out" & PIDS+=($!)
ECHO=$(wait_for "$OUT/echo.out" "listening on" | awk '{print $3}')
start_proxy() { # NAME ARGS...
  local name=$1; shift
  "${ALONE[@]}" "$W" proxy --upstream "ws://$ECHO" --listen 127.0.0.1:0 --control 127.0.0.1:0 --log-level warn "$@" \
    > "$OUT/$name.out" 2>"$OUT/$name.err" & PIDS+=($!)
  wait_for "$OUT/$name.out" "listen=" >/dev/null
}
start_proxy off --no-store
OFF=$(sed -n 's/.*listen=\([^ ]*\).*/\1/p' "$OUT/off.out")
start_proxy on --store "sqlite://$OUT/record.db"
ON=$(sed -n 's/.*listen=\([^ ]*\).*/\1/p' "$OUT/on.out")
ON_CONTROL=$(sed -n 's/.*control=\([^ ]*\).*/\1/p' "$OUT/on.out")

run() { "${LOAD[@]}" "$W" bench echo "ws://$1/bench" -c 64 -k 1 -s 64 --duration "$DUR" --warmup 1 --json --no-progress \
  | python3 -c "import json,sys; d=json.load(sys.stdin); assert d['errors']+d['lost']==0, d; print(d['msgs_per_sec'])"; }
echo "== proxy, 64 connections ping-pong, 64 B: --no-store vs SQLite recording"
for i in $(seq "$ROUNDS"); do
  a=$(run "$OFF"); b=$(run "$ON")
  echo "$a $b" >> "$OUT/rounds"
done
python3 bench/rounds.py "$OUT/rounds" --no-store recording recording/no-store 0.85 || true

metric() { curl -s "http://$ON_CONTROL/metrics" | awk -v m="$1" '$1 == m {print $2}'; }
echo "== sustained 20000 msgs/s for ${DUR_RATE}s through the recording proxy"
before_rows=$(metric wsgate_store_rows_total); before_drop=$(metric 'wsgate_observer_dropped_total{observer="store"}')
"${LOAD[@]}" "$W" bench echo "ws://$ON/rate" -c 32 -k 4 -s 128 --rate 20000 --duration "$DUR_RATE" --json --no-progress > "$OUT/rate.json"
# The recorder commits within ~100 ms: wait until the row count stops moving.
prev=-1; rows=$(metric wsgate_store_rows_total)
until [ "$rows" = "$prev" ]; do sleep 0.3; prev=$rows; rows=$(metric wsgate_store_rows_total); done
after_rows=$(metric wsgate_store_rows_total); after_drop=$(metric 'wsgate_observer_dropped_total{observer="store"}')
python3 - "$OUT/rate.json" "$before_rows" "$after_rows" "$before_drop" "$after_drop" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
rows = float(sys.argv[3]) - float(sys.argv[2]); drops = float(sys.argv[5]) - float(sys.argv[4])
print(f"offered {d['msgs_per_sec']:,.0f} msgs/s echoed (errors {d['errors']}, lost {d['lost']}); "
      f"rows committed {rows:,.0f}; recorder drops {drops:,.0f} (target 0)  {'PASS' if drops == 0 else 'FAIL'}")
PY
