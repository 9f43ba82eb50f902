#!/usr/bin/env bash
# `wsgate mock --echo` against the minimal echo server, same run, same load:
#   8 connections × 16 in flight, 64 B                 target: mock ≥ 0.9× echo server
# Rounds alternate between the two servers so drift on a noisy machine hits both.
# Usage: bench/mock.sh   (DUR seconds per run, default 5; ROUNDS, default 3)
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
DUR=${DUR:-5}
ROUNDS=${ROUNDS:-3}
cargo build --release --quiet -p wsgate -p wsgate-echo-server
W=target/release/wsgate
"${ALONE[@]}" target/release/wsgate-echo-server 127.0.0.1:0 > "$OUT/echo.out" & PIDS+=($!)
ECHO=$(wait_for "$OUT/echo.out" "listening on" | awk '{print $3}')
"${ALONE[@]}" "$W" mock --echo --no-store --listen 127.0.0.1:0 --control 127.0.0.1:0 --log-level warn > "$OUT/mock.out" 2>/dev/null & PIDS+=($!)
MOCK=$(wait_for "$OUT/mock.out" "listen=" | sed 's/.*listen=\([^ ]*\).*/\1/')
run() { "${LOAD[@]}" "$W" bench echo "ws://$1" -c 8 -k 16 -s 64 --duration "$DUR" --warmup 1 --json --no-progress \
  | python3 -c "import json,sys; d=json.load(sys.stdin); assert d['errors']+d['lost']==0, d; print(d['msgs_per_sec'])"; }
for i in $(seq "$ROUNDS"); do
  e=$(run "$ECHO"); m=$(run "$MOCK")
  echo "$e $m" >> "$OUT/rounds"
done
python3 - "$OUT/rounds" <<'PY'
import sys
rows = [tuple(map(float, l.split())) for l in open(sys.argv[1])]
for i, (e, m) in enumerate(rows, 1):
    print(f"round {i}: echo server {e:,.0f} msgs/s, wsgate mock --echo {m:,.0f} msgs/s, ratio {m/e:.2f}")
e, m = sum(r[0] for r in rows), sum(r[1] for r in rows)
ratios = sorted(b / a for a, b in rows)
median = ratios[len(ratios) // 2] if len(ratios) % 2 else sum(ratios[len(ratios) // 2 - 1:][:2]) / 2
ok = m / e >= 0.9
print(f"median round ratio {median:.2f}")
print(f"overall: mock/echo = {m/e:.2f} (target >= 0.9)  {'PASS' if ok else 'FAIL'}")
sys.exit(0 if ok else 1)
PY
