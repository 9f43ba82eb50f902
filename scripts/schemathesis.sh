#!/usr/bin/env bash
# Schemathesis against the control plane, driven by the OpenAPI document the control
# plane serves about itself (GET /api/openapi.json, generated from the code).
#
# For each configuration — no admin token, then an admin token — it starts
# `wsgate mock --echo` on 127.0.0.1:0 ports (addresses read from its ready line),
# opens real WebSocket sessions to it with Python `websockets` so the per-session
# routes have real ids to hit, runs every Schemathesis check in every phase with a
# bounded number of examples, and then checks that the gateway still answers, a new
# session still echoes, and nothing panicked. Any finding, in either run, fails the
# script. (Schemathesis's stateful phase finds every session through
# GET /api/sessions and may close any of them, so "a session opened before still
# echoes" is checked by the api_hostile integration test instead.)
#
# Usage: scripts/schemathesis.sh            (both runs)
# Env:   WSGATE_SCHEMATHESIS_EXAMPLES=N     test cases per operation and phase (default 50)
#        WSGATE_SCHEMATHESIS_VENV=DIR       where Schemathesis is installed
#                                           (default ~/.cache/wsgate/schemathesis-venv)
#        WSGATE_SCHEMATHESIS_SEED=N|random  Hypothesis seed (default fixed, so that a CI run
#                                           can be reproduced; `random` to explore)
#        WSGATE_SCHEMATHESIS_OUT=DIR        keep the reports, configs and gateway logs there
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${WSGATE_SCHEMATHESIS_VENV:-$HOME/.cache/wsgate/schemathesis-venv}
EXAMPLES=${WSGATE_SCHEMATHESIS_EXAMPLES:-50}
SEED=${WSGATE_SCHEMATHESIS_SEED:-20261123}
if [ "$SEED" = random ]; then SEED=$(od -An -N4 -tu4 /dev/urandom | tr -d ' '); fi
SCHEMATHESIS_REQ='schemathesis>=4,<5'
WEBSOCKETS_REQ='websockets>=13,<16'

say() { printf '\n== %s\n' "$*" >&2; }

# --- Schemathesis, in its own venv -----------------------------------------------------
if ! "$VENV/bin/schemathesis" --version >/dev/null 2>&1 || ! "$VENV/bin/python" -c 'import websockets.asyncio.client' 2>/dev/null; then
  say "installing Schemathesis into $VENV"
  if ! python3 -m venv "$VENV" 2>/dev/null; then
    # Debian ships venv's pip bootstrap separately.
    rm -rf "$VENV"
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
    else
      echo "schemathesis: python3 -m venv failed; install python3-venv" >&2
      exit 1
    fi
    python3 -m venv "$VENV"
  fi
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "$SCHEMATHESIS_REQ" "$WEBSOCKETS_REQ"
fi
PY="$VENV/bin/python"

# --- The binary --------------------------------------------------------------------------
say "building wsgate"
cargo build --quiet -p wsgate
BIN="${CARGO_TARGET_DIR:-target}/debug/wsgate"

if [ -n "${WSGATE_SCHEMATHESIS_OUT:-}" ]; then
  mkdir -p "$WSGATE_SCHEMATHESIS_OUT"
  WORK=$(cd "$WSGATE_SCHEMATHESIS_OUT" && pwd)
  KEEP=1
else
  WORK=$(mktemp -d)
  KEEP=
fi
GW_PID=
SESS_PID=
cleanup() {
  # Only the processes this script started, by pid.
  [ -n "$SESS_PID" ] && kill "$SESS_PID" 2>/dev/null || true
  [ -n "$GW_PID" ] && kill "$GW_PID" 2>/dev/null || true
  wait 2>/dev/null || true
  [ -n "$KEEP" ] || rm -rf "$WORK"
}
trap cleanup EXIT

# The WebSocket side: opens sessions, prints their ids as one JSON line, keeps them
# open (reading whatever is injected) until they are closed, and on a line from stdin
# checks that the gateway answers and a new session echoes, printing the verdict.
# shellcheck disable=SC2016
SESSIONS_PY='
import asyncio, json, sys, urllib.request
from websockets.asyncio.client import connect

listen, control, token = sys.argv[1], sys.argv[2], sys.argv[3]
SESSIONS = 8  # close takes one each time it hits a real id

def get(path):
    req = urllib.request.Request(f"http://{control}{path}")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(req, timeout=10) as r:
        return r.status, json.load(r)

async def hold(ws):
    try:
        async for _ in ws:  # injected messages; ends when the session is closed
            pass
    except Exception:
        pass

async def echoes(path):
    async with connect(f"ws://{listen}{path}") as ws:
        await ws.send(path)
        assert await asyncio.wait_for(ws.recv(), 10) == path

async def main():
    sessions = [await connect(f"ws://{listen}/schemathesis/{i}") for i in range(SESSIONS)]
    for i, ws in enumerate(sessions):
        await ws.send(f"hello {i}")
        assert await asyncio.wait_for(ws.recv(), 10) == f"hello {i}"
    _, listed = await asyncio.to_thread(get, "/api/sessions?state=CONNECTED&kind=mock")
    ids = [s["id"] for s in listed["sessions"] if s["path"].startswith("/schemathesis/")]
    assert len(ids) == SESSIONS, listed
    print(json.dumps(ids), flush=True)
    holders = [asyncio.create_task(hold(ws)) for ws in sessions]
    await asyncio.to_thread(sys.stdin.readline)  # Schemathesis is done
    status, health = await asyncio.to_thread(get, "/healthz")
    assert (status, health) == (200, {"status": "ok"}), (status, health)
    await echoes("/after")
    for h in holders:
        h.cancel()
    print("ok: /healthz answers and a new session echoes", flush=True)

asyncio.run(main())
'

TOTAL_OPS=0
TOTAL_CASES=0
TOTAL_FAILURES=0
TOTAL_SERVER_ERRORS=0

# run_one NAME [wsgate flags...]
run_one() {
  local name=$1
  shift
  local token=
  if [ "${1:-}" = --admin-token ]; then token=$2; fi
  say "schemathesis ($name): starting wsgate mock --echo $*"

  # The gateway; its ready line names the ports.
  exec {gw_out}< <(exec "$BIN" mock --echo --listen 127.0.0.1:0 --control 127.0.0.1:0 --store "sqlite://$WORK/$name.db" "$@" 2>"$WORK/$name.gateway.log")
  GW_PID=$!
  local ready=
  if ! IFS= read -r -t 30 -u "$gw_out" ready; then
    echo "schemathesis: wsgate did not print its ready line; its log:" >&2
    cat "$WORK/$name.gateway.log" >&2
    exit 1
  fi
  echo "$ready" >&2
  local listen control
  listen=$(sed -n 's/.* listen=\([^ ]*\).*/\1/p' <<<"$ready")
  control=$(sed -n 's/.* control=\([^ ]*\).*/\1/p' <<<"$ready")

  # Real sessions.
  coproc SESSIONS { exec "$PY" -c "$SESSIONS_PY" "$listen" "$control" "$token"; }
  SESS_PID=$SESSIONS_PID
  local ids=
  if ! IFS= read -r -t 30 -u "${SESSIONS[0]}" ids; then
    echo "schemathesis: could not open WebSocket sessions" >&2
    exit 1
  fi
  echo "sessions for the session routes: $ids" >&2

  # Schemathesis configuration: real ids for `{id}` half the time, the token when
  # there is one, and what a plain HTTP request to a WebSocket route gets.
  local cfg="$WORK/$name.schemathesis.toml"
  {
    # No state left in the checkout or carried from run to run.
    echo '[cache]'
    echo 'enabled = false'
    echo
    echo '[dictionaries.sessions]'
    echo "values = $ids"
    echo
    echo '[parameters]'
    echo '"path.id" = { dictionary = "sessions", probability = 0.5 }'
    echo '"query.before" = { dictionary = "sessions", probability = 0.3 }'
    echo
    # Warnings that mean the document is wrong fail the run.
    echo '[warnings]'
    echo 'fail-on = ["missing_auth", "unused_openapi_auth", "base_url_mismatch", "missing_deserializer", "unsupported_regex", "unresolvable_reference", "dictionary_mismatch"]'
    if [ -n "$token" ]; then
      echo
      echo '[auth.openapi.bearer]'
      echo 'bearer = "${WSGATE_ADMIN_TOKEN}"'
    fi
    # OpenAPI cannot describe the WebSocket handshake, so a schema-valid request to a
    # WebSocket route is a plain GET, which is correctly refused with 426 (and the
    # Upgrade header); everything else about these routes is checked as usual.
    echo
    echo '[[operations]]'
    echo 'include-tag = ["live", "taps"]'
    echo 'checks.positive_data_acceptance.expected-statuses = [101, 426]'
    echo 'warnings = false  # "mostly rejected": the 426s above'
    # A close reason is limited to 123 bytes of UTF-8, and JSON Schema's maxLength
    # counts characters: with ASCII reasons the two agree, so the limit is tested
    # exactly. (Non-ASCII and invalid UTF-8 bodies are the api_hostile tests' job.)
    echo
    echo '[[operations]]'
    echo 'include-operation-id = "close"'
    echo 'generation.codec = "ascii"'
  } >"$cfg"

  local report="$WORK/$name.report.json"
  # The [auth] section covers the operations, not fetching the document (which needs
  # the token like every /api route): -H covers that. The ignored_auth check still
  # sends each guarded operation without it, expecting the 401.
  local headers=()
  if [ -n "$token" ]; then headers=(-H "Authorization: Bearer $token"); fi
  say "schemathesis ($name): run http://$control/api/openapi.json"
  local rc=0
  # One worker: with several, Hypothesis parses lambda sources from several threads,
  # which CPython 3.11's ast module does not survive ("AST constructor recursion depth
  # mismatch", an error in Schemathesis, not a finding).
  WSGATE_ADMIN_TOKEN=$token "$VENV/bin/schemathesis" --config-file "$cfg" run "http://$control/api/openapi.json" \
    "${headers[@]}" \
    --checks all \
    "${ST_SELECT[@]}" \
    --max-examples "$EXAMPLES" \
    --seed "$SEED" \
    --request-timeout 10 \
    --max-response-time 5 \
    --workers 1 \
    --no-color \
    --report json --report-json-path "$report" || rc=$?

  # A run that set faults on the mock's route clears them first (they would refuse
  # or drop the check's session, by design).
  if [ -n "${CLEAR_FAULTS:-}" ]; then
    curl -s -o /dev/null -X DELETE "${headers[@]}" "http://$control/api/routes/mock/faults"
  fi
  # Afterwards: the gateway answers, a new session echoes.
  echo >&"${SESSIONS[1]}"
  local verdict=
  IFS= read -r -t 30 -u "${SESSIONS[0]}" verdict || true
  wait "$SESS_PID" || { echo "schemathesis ($name): gateway check failed: ${verdict:-no answer}" >&2; exit 1; }
  SESS_PID=
  echo "$verdict" >&2
  if ! kill -0 "$GW_PID" 2>/dev/null; then
    echo "schemathesis ($name): wsgate died; its log:" >&2
    tail -50 "$WORK/$name.gateway.log" >&2
    exit 1
  fi
  if grep -q 'panicked' "$WORK/$name.gateway.log"; then
    echo "schemathesis ($name): wsgate panicked:" >&2
    grep -A5 'panicked' "$WORK/$name.gateway.log" >&2
    exit 1
  fi
  kill "$GW_PID"
  wait "$GW_PID" 2>/dev/null || true
  GW_PID=
  exec {gw_out}<&-

  if [ ! -s "$report" ]; then
    echo "schemathesis ($name): no report: Schemathesis did not run (exit $rc)" >&2
    exit 1
  fi
  local figures
  figures=$("$PY" -c '
import json, sys
r = json.load(open(sys.argv[1]))
# ST101 server error, ST102 server error on an undeclared Content-Type.
server = sum(f["count"] for f in r["failures"] if f["code"] in ("ST101", "ST102"))
failures = sum(f["count"] for f in r["failures"]) + len(r["errors"])
print(r["operations"]["tested"], r["test_cases"]["generated"], failures, server)
' "$report")
  read -r ops cases failures server <<<"$figures"
  echo "schemathesis ($name): $ops operations, $cases test cases, $failures failures, $server server errors (exit $rc)" >&2
  TOTAL_OPS=$((TOTAL_OPS + ops))
  TOTAL_CASES=$((TOTAL_CASES + cases))
  TOTAL_FAILURES=$((TOTAL_FAILURES + failures))
  TOTAL_SERVER_ERRORS=$((TOTAL_SERVER_ERRORS + server))
  if [ "$rc" != 0 ] && [ "$failures" = 0 ]; then TOTAL_FAILURES=$((TOTAL_FAILURES + 1)); fi
}

# Every operation but three, without and with the admin token.
ST_SELECT=(--exclude-operation-id create --exclude-operation-id set_faults --exclude-operation-id clear_faults)
run_one open
run_one token --admin-token "st-$SEED-token"
# POST /api/connections on its own. What makes a connection request valid beyond its
# shape — a URL the URL parser takes (host syntax), a reconnect policy whose max_ms
# is at least its base_ms — cannot be said in JSON Schema; the API answers those with
# a 400 naming the field (tests/it/outbound.rs checks each), and header values may
# carry obs-text, as HTTP allows. So the two data-acceptance checks are off for it;
# server errors, response conformance and everything else are checked. (A per-
# operation `checks` section in the config is not honoured by Schemathesis 4.) The
# connections it opens go to generated hosts: refused, unresolvable or timed out.
ST_SELECT=(--include-operation-id create --exclude-checks positive_data_acceptance,negative_data_rejection)
run_one connections
# Setting and clearing a route's faults, on their own, for the same reason: what makes
# a fault spec valid beyond its shape (min <= max, one distribution per latency, one
# latency per direction, a duration within an hour, a disconnect that says when) is
# a 400 naming the field (tests/it/faults.rs), not JSON Schema. And a route's faults
# are a setting, not a resource: after DELETE, GET still answers, with `null`
# (use_after_free expects a 404).
ST_SELECT=(--include-operation-id set_faults --include-operation-id clear_faults --include-operation-id get_faults
  --exclude-checks positive_data_acceptance,negative_data_rejection,use_after_free)
CLEAR_FAULTS=1 run_one faults

echo "schemathesis: 4 runs (open, admin token, connections, faults), seed $SEED: $TOTAL_OPS operations, $TOTAL_CASES test cases, $TOTAL_FAILURES failures, $TOTAL_SERVER_ERRORS server errors"
[ "$TOTAL_FAILURES" = 0 ] && [ "$TOTAL_SERVER_ERRORS" = 0 ]
