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
python3 bench/rounds.py "$OUT/rounds" "echo server" "wsgate mock --echo" mock/echo 0.9
