#!/usr/bin/env bash
# A proxy route with one rule that matches nothing (the common case for a rules file:
# most messages pass through untouched) against the same route without rules, same
# run, same load, alternating rounds; and the same route with faults switched on and
# then off again through the API (a route whose faults were ever set pays the check).
#   8 connections × 16 in flight, 64 B      target: rules ≥ 0.9× no rules (--no-store)
#   64 connections ping-pong, 64 B          target: rules ≥ 0.9× no rules (--no-store)
# Each also with recording on (the default), as users run it.
# Usage: bench/rules.sh   (DUR seconds per run, default 5; ROUNDS, default 3)
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
DUR=${DUR:-5}
ROUNDS=${ROUNDS:-3}
cargo build --release --quiet -p wsgate -p wsgate-echo-server
W=target/release/wsgate
"${LOAD[@]}" target/release/wsgate-echo-server 127.0.0.1:0 > "$OUT/echo.out" & PIDS+=($!)
ECHO=$(wait_for "$OUT/echo.out" "listening on" | awk '{print $3}')
cat > "$OUT/noop.yaml" <<'YAML'
rules:
  - name: noop
    direction: both
    match: { regex: "^never-sent-by-the-benchmark$" }
    drop: true
YAML
PLAIN=$(start_gateway plain proxy --upstream "ws://$ECHO" --no-store); PIDS+=("$(cat "$OUT/plain.pid")")
RULES=$(start_gateway rules proxy --upstream "ws://$ECHO" --no-store --proxy-rules "$OUT/noop.yaml"); PIDS+=("$(cat "$OUT/rules.pid")")
# And as users run it: recording on (SQLite, the default --record drop).
PLAIN_REC=$(start_gateway plain-rec proxy --upstream "ws://$ECHO" --store "sqlite://$OUT/plain.db"); PIDS+=("$(cat "$OUT/plain-rec.pid")")
RULES_REC=$(start_gateway rules-rec proxy --upstream "ws://$ECHO" --store "sqlite://$OUT/rules.db" --proxy-rules "$OUT/noop.yaml"); PIDS+=("$(cat "$OUT/rules-rec.pid")")
FAULTS=$(start_gateway faults proxy --upstream "ws://$ECHO" --no-store); PIDS+=("$(cat "$OUT/faults.pid")")
# Faults set, then cleared: its sessions check the switch on every message.
CONTROL=$(sed 's/.*control=\([^ ]*\).*/\1/' "$OUT/faults.out" | head -1)
curl -sf -X PUT "http://$CONTROL/api/routes/default/faults" -H 'Content-Type: application/json' -d '{"drop":{"rate":0.5}}' > /dev/null
curl -sf -X DELETE "http://$CONTROL/api/routes/default/faults" > /dev/null
rate() {
  local url=$1; shift
  "${LOAD[@]}" "$W" bench echo "$url" "$@" --duration "$DUR" --warmup 1 --json --no-progress \
    | python3 -c "import json,sys; d=json.load(sys.stdin); assert d['errors']+d['lost']==0, d; print(d['msgs_per_sec'])"
}
ok=0
for w in "8 x 16 in flight:-c 8 -k 16 -s 64" "64 conns ping-pong:-c 64 -k 1 -s 64"; do
  label=${w%%:*}; args=${w#*:}
  : > "$OUT/rules.rounds"; : > "$OUT/faults.rounds"; : > "$OUT/rec.rounds"
  for i in $(seq "$ROUNDS"); do
    # shellcheck disable=SC2086
    p=$(rate "ws://$PLAIN" $args); r=$(rate "ws://$RULES" $args); f=$(rate "ws://$FAULTS" $args)
    # shellcheck disable=SC2086
    pr=$(rate "ws://$PLAIN_REC" $args); rr=$(rate "ws://$RULES_REC" $args)
    echo "$p $r" >> "$OUT/rules.rounds"; echo "$p $f" >> "$OUT/faults.rounds"; echo "$pr $rr" >> "$OUT/rec.rounds"
  done
  echo "== proxy, $label: one no-op rule (--no-store)"
  python3 bench/rounds.py "$OUT/rules.rounds" "no rules" "one no-op rule" rules/plain 0.9 || ok=1
  echo "== proxy, $label: one no-op rule (recording)"
  python3 bench/rounds.py "$OUT/rec.rounds" "no rules" "one no-op rule" rules/plain 0.9 || ok=1
  echo "== proxy, $label: faults set, then cleared"
  python3 bench/rounds.py "$OUT/faults.rounds" "never set" "set then cleared" faults/plain 0.9 || ok=1
done
exit $ok
