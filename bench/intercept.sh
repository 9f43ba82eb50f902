#!/usr/bin/env bash
# What intercept costs a proxy route while no breakpoint is armed (the usual case):
# the same proxy built without intercept (BASE, default the commit before it landed)
# against this build, same run, same load, alternating rounds; and this build with
# a breakpoint armed on the route and removed again through the API (its sessions
# then compare the route's version on every message, as after any operator's use).
#   8 connections × 16 in flight, 64 B     target: ≥ 0.98× the build without intercept
#   64 connections ping-pong, 64 B         target: ≥ 0.98×
# Each with --no-store and with recording on (the default), as users run it; the
# 8 × 16 rows also with tt-load (bench/tt-load, tokio-tungstenite: a client no one
# here wrote).
# Usage: bench/intercept.sh   (DUR seconds per run, default 5; ROUNDS, default 3;
#        BASE a git revision to compare against)
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
DUR=${DUR:-5}
ROUNDS=${ROUNDS:-3}
BASE=${BASE:-$(git log --format=%H -1 --grep='^Intercept API')^}
BASE=$(git rev-parse --verify "$BASE^{commit}")

cargo build --release --quiet -p wsgate -p wsgate-echo-server -p wsgate-tt-load
# The baseline from its own checkout and target directory, kept between runs.
SRC=target/bench-base/src
if [ "$(git -C "$SRC" rev-parse HEAD 2>/dev/null)" != "$BASE" ]; then
  git worktree remove --force "$SRC" 2>/dev/null || rm -rf "$SRC"
  git worktree prune
  git worktree add --detach "$SRC" "$BASE" > /dev/null
fi
echo "baseline: $(git log --format='%h %s' -1 "$BASE" | cut -c1-100)" >&2
(cd "$SRC" && CARGO_TARGET_DIR="$PWD/../build" cargo build --release --quiet -p wsgate)
NEW=target/release/wsgate
OLD=target/bench-base/build/release/wsgate
T=target/release/tt-load
W=$NEW

"${LOAD[@]}" target/release/wsgate-echo-server 127.0.0.1:0 > "$OUT/echo.out" & PIDS+=($!)
ECHO=$(wait_for "$OUT/echo.out" "listening on" | awk '{print $3}')

# gateway NAME BINARY STORE-ARGS...: a proxy to the echo server; prints its address.
gateway() {
  local name=$1; W=$2; shift 2
  start_gateway "$name" proxy --upstream "ws://$ECHO" "$@"
}
for store in nostore rec; do
  if [ $store = nostore ]; then args=(--no-store); else args=(--store "sqlite://$OUT/NAME.db"); fi
  for b in base off armed; do
    bin=$NEW; [ $b = base ] && bin=$OLD
    a=("${args[@]/NAME/$b}")
    addr=$(gateway "$b-$store" "$bin" "${a[@]}"); PIDS+=("$(cat "$OUT/$b-$store.pid")")
    echo "$addr" > "$OUT/$b-$store.addr"
  done
  # Armed, then removed: the route's sessions have seen a breakpoint come and go.
  control=$(sed 's/.*control=\([^ ]*\).*/\1/' "$OUT/armed-$store.out" | head -1)
  id=$(curl -sf -X POST "http://$control/api/intercepts" -H 'Content-Type: application/json' \
    -d '{"route":"default","match":"^never-sent-by-the-benchmark$"}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
  curl -sf -X DELETE "http://$control/api/intercepts/$id" > /dev/null
done
W=$NEW

rate() { # URL ARGS...: wsgate bench echo msgs/s
  local url=$1; shift
  "${LOAD[@]}" "$W" bench echo "$url" "$@" --duration "$DUR" --warmup 1 --json --no-progress \
    | python3 -c "import json,sys; d=json.load(sys.stdin); assert d['errors']+d['lost']==0, d; print(d['msgs_per_sec'])"
}
tt_rate() { # URL ARGS...: tt-load msgs/s
  local url=$1; shift
  "${LOAD[@]}" "$T" "$url" "$@" --duration "$DUR" --warmup 1 \
    | python3 -c "import json,sys; d=json.load(sys.stdin); assert d['errors']+d['lost']==0, d; print(d['msgs_per_sec'])"
}
ok=0
for w in "wsgate:8 x 16 in flight:-c 8 -k 16 -s 64" "wsgate:64 conns ping-pong:-c 64 -k 1 -s 64" "tt:8 x 16 in flight:-c 8 -k 16 -s 64"; do
  client=${w%%:*}; rest=${w#*:}; label=${rest%%:*}; args=${rest#*:}
  fn=rate; [ "$client" = tt ] && fn=tt_rate
  for store in nostore rec; do
    : > "$OUT/off.rounds"; : > "$OUT/armed.rounds"
    for _ in $(seq "$ROUNDS"); do
      # shellcheck disable=SC2086
      b=$($fn "ws://$(cat "$OUT/base-$store.addr")" $args)
      # shellcheck disable=SC2086
      o=$($fn "ws://$(cat "$OUT/off-$store.addr")" $args)
      # shellcheck disable=SC2086
      a=$($fn "ws://$(cat "$OUT/armed-$store.addr")" $args)
      echo "$b $o" >> "$OUT/off.rounds"; echo "$b $a" >> "$OUT/armed.rounds"
    done
    mode=$([ $store = rec ] && echo "recording" || echo "--no-store")
    echo "== $label, $client client, $mode: intercept never armed"
    python3 bench/rounds.py "$OUT/off.rounds" "without intercept" "with, off" off/base 0.98 || ok=1
    echo "== $label, $client client, $mode: a breakpoint armed, then removed"
    python3 bench/rounds.py "$OUT/armed.rounds" "without intercept" "armed then removed" removed/base 0.98 || ok=1
  done
done
exit $ok
