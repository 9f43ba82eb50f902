#!/usr/bin/env bash
# The dashboard's speed (issue 13), in Chromium (bench/dashboard.mjs prints the
# figures): a stored session of 100 000 messages opened (first page < 1 s), 1 000
# live sessions listed, and a session receiving 200 messages/s watched for 10 s
# with those 1 000 open (no message missing, the page's main thread busy < 50 %).
# The gateway runs as users run it: release build, recording on (SQLite).
#
# Usage: bench/dashboard.sh   (HELD connections, default 1000)
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
HELD=${HELD:-1000}
scripts/interop-setup > /dev/null
cargo build --release --quiet -p wsgate -p wsgate-echo-server
W=target/release/wsgate
ulimit -n "$(ulimit -Hn)"

"${LOAD[@]}" target/release/wsgate-echo-server 127.0.0.1:0 > "$OUT/echo.out" & PIDS+=($!)
ECHO=$(wait_for "$OUT/echo.out" "listening on" | sed 's/.*listening on //')
LISTEN=$(start_gateway gw proxy --upstream "ws://$ECHO" --store "sqlite://$OUT/history.db")
PIDS+=("$(cat "$OUT/gw.pid")")
CONTROL=$(grep -m1 "control=" "$OUT/gw.out" | sed 's/.*control=\([^ ]*\).*/\1/')
API="http://$CONTROL"

echo "== a session of 100 000 messages (50 000 sent, each echoed), stored"
node --input-type=module - "ws://$LISTEN/big" <<'JS'
import { createRequire } from 'node:module';
const require = createRequire(`${process.cwd()}/tests/interop/node/package.json`);
const WebSocket = require('ws');
const ws = new WebSocket(process.argv[2]);
await new Promise((r) => ws.on('open', r));
const N = 50_000;
let got = 0;
const done = new Promise((r) => ws.on('message', () => { if (++got === N) r(); }));
for (let i = 0; i < N; i++) ws.send(JSON.stringify({ n: i, price: 100 + (i % 17), side: i % 2 ? 'buy' : 'sell' }));
await done;
ws.close(1000);
await new Promise((r) => ws.on('close', r));
JS
ID=$(curl -s "$API/api/sessions?path=/big" | python3 -c "import json,sys; print(json.load(sys.stdin)['sessions'][0]['id'])")
# Stored once its totals are (the recorder commits within about 100 ms).
for _ in $(seq 200); do
  TOTAL=$(curl -s "$API/api/sessions/$ID" | python3 -c "import json,sys; s=json.load(sys.stdin); print(s['messages_in']+s['messages_out'] if not s.get('live') else 0)")
  LAST=$(curl -s "$API/api/sessions/$ID/messages?after_seq=$((TOTAL - 1))&limit=1" | python3 -c "import json,sys; print(len(json.load(sys.stdin)['messages']))")
  [ "$TOTAL" -gt 0 ] && [ "$LAST" = 1 ] && break
  sleep 0.1
done
echo "session $ID: $TOTAL messages stored"

echo "== $HELD idle sessions held open"
"${LOAD[@]}" "$W" bench hold "ws://$LISTEN/idle" -c "$HELD" --ready-file "$OUT/held" --no-progress > "$OUT/hold.out" 2>&1 & PIDS+=($!)
wait_for "$OUT/held" "" > /dev/null

echo "== the dashboard in Chromium"
"${LOAD[@]}" node bench/dashboard.mjs "$API" "ws://$LISTEN" "$ID" "$TOTAL" "$HELD"
