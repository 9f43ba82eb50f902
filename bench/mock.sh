#!/usr/bin/env bash
# `wsgate mock --echo` (the echo behaviour on the shared server-session layer) against
# the minimal echo server (bench/echo-server), same run, same load:
#   8 connections × 16 in flight, 64 B      target: mock ≥ 0.95× echo server (--no-store)
#   64 connections ping-pong, 64 B          target: mock ≥ 0.95× echo server (--no-store)
# and, for what users run by default, the same with recording on (SQLite, --record
# drop), printed beside it.
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
# rate URL ARGS...: msgs/s of `wsgate bench echo`, failing on any error or lost message.
rate() {
  local url=$1; shift
  "${LOAD[@]}" "$W" bench echo "$url" "$@" --duration "$DUR" --warmup 1 --json --no-progress \
    | python3 -c "import json,sys; d=json.load(sys.stdin); assert d['errors']+d['lost']==0, d; print(d['msgs_per_sec'])"
}
ok=0
for store in no-store rec; do
  if [ "$store" = rec ]; then MOCK=$(start_gateway mock-rec mock --echo --store "sqlite://$OUT/mock.db"); else MOCK=$(start_gateway mock-no-store mock --echo --no-store); fi
  PIDS+=("$(cat "$OUT/mock-$store.pid")")
  for w in "8 x 16 in flight:-c 8 -k 16 -s 64" "64 conns ping-pong:-c 64 -k 1 -s 64"; do
    label=${w%%:*}; args=${w#*:}
    : > "$OUT/rounds"
    for i in $(seq "$ROUNDS"); do
      # shellcheck disable=SC2086
      e=$(rate "ws://$ECHO" $args); m=$(rate "ws://$MOCK" $args)
      echo "$e $m" >> "$OUT/rounds"
    done
    echo "== mock $store, $label"
    if [ "$store" = no-store ]; then
      python3 bench/rounds.py "$OUT/rounds" "echo server" "wsgate mock --echo" mock/echo 0.95 || ok=1
    else
      # Recording writes every message twice (in and out) to SQLite: shown, not held to the target.
      python3 bench/rounds.py "$OUT/rounds" "echo server" "wsgate mock --echo (recording)" mock/echo 0 || true
    fi
  done
  kill "${PIDS[-1]}" 2>/dev/null || true
done
exit $ok
