#!/usr/bin/env bash
# A proxy route inside a three-route `wsgate serve` against `wsgate proxy` alone, same
# run, same load (8 connections × 16 in flight, 64 B), recording (the default: SQLite,
# --record drop) and with --no-store:                   target: serve route ≥ 0.95× proxy
# The serve gateway has two proxy routes to two echo upstreams and an echo mock; the
# load goes to `/api/*` (strip_prefix), so matching and stripping are on the path.
# Rounds alternate between the two gateways so drift on a noisy machine hits both.
# Usage: bench/routes.sh   (DUR seconds per run, default 5; ROUNDS, default 3)
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
DUR=${DUR:-5}
ROUNDS=${ROUNDS:-3}
cargo build --release --quiet -p wsgate -p wsgate-echo-server
W=target/release/wsgate
E=target/release/wsgate-echo-server
"${LOAD[@]}" "$E" 127.0.0.1:0 > "$OUT/echo.out" & PIDS+=($!)
ECHO=$(wait_for "$OUT/echo.out" "listening on" | awk '{print $3}')
"${LOAD[@]}" "$E" 127.0.0.1:0 > "$OUT/echo2.out" & PIDS+=($!)
ECHO2=$(wait_for "$OUT/echo2.out" "listening on" | awk '{print $3}')
cat > "$OUT/routes.yaml" <<YAML
routes:
  - name: api
    path: /api/*
    proxy: { upstream: "ws://$ECHO", strip_prefix: /api }
  - name: feed
    path: /feed
    proxy: { upstream: "ws://$ECHO2" }
  - name: echo
    path: /echo
    mock: { echo: true }
YAML

ok=0
for store in rec no-store; do
  if [ "$store" = rec ]; then
    P=$(start_gateway proxy-rec proxy --upstream "ws://$ECHO" --store "sqlite://$OUT/proxy.db")
    S=$(start_gateway serve-rec serve --config "$OUT/routes.yaml" --store "sqlite://$OUT/serve.db")
  else
    P=$(start_gateway proxy-no-store proxy --upstream "ws://$ECHO" --no-store)
    S=$(start_gateway serve-no-store serve --config "$OUT/routes.yaml" --no-store)
  fi
  PIDS+=("$(cat "$OUT/proxy-$store.pid")" "$(cat "$OUT/serve-$store.pid")")
  : > "$OUT/rounds-$store"
  for i in $(seq "$ROUNDS"); do
    p=$(echo_rate "ws://$P/x"); s=$(echo_rate "ws://$S/api/x")
    echo "$p $s" >> "$OUT/rounds-$store"
  done
  echo "== $store (proxy and serve each with ${store/rec/recording into their own SQLite file})"
  python3 bench/rounds.py "$OUT/rounds-$store" "wsgate proxy" "serve route /api/*" serve/proxy 0.95 || ok=1
  for p in "${PIDS[@]:2}"; do kill "$p" 2>/dev/null || true; done
  PIDS=("${PIDS[@]:0:2}")
done
exit $ok
