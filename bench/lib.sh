# Shared by the bench/*.sh scripts: process cleanup, readiness, CPU placement.
# Source it after `cd` to the repository root.

OUT=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$OUT"; }
trap cleanup EXIT

# The measured server gets its own core where the machine has two; the load
# generator (and, for the proxy, the echo upstream) share the other.
if [ "$(nproc)" -ge 2 ]; then LOAD=(taskset -c 0); ALONE=(taskset -c 1); else LOAD=(); ALONE=(); fi

# wait_for FILE PATTERN: prints the first line of FILE matching PATTERN once it appears
# (servers print a ready line with their bound port).
wait_for() {
  local deadline=$((SECONDS + 30))
  until grep -q "$2" "$1" 2>/dev/null; do
    [ $SECONDS -lt $deadline ] || { echo "timed out waiting for $2 in $1" >&2; cat "$1" >&2; exit 1; }
    sleep 0.05
  done
  grep -m1 "$2" "$1"
}

# start_gateway NAME SUBCOMMAND ARGS...: starts `$W SUBCOMMAND` on its own core with
# ports 0, prints its listen address once ready, and keeps its pid in $OUT/NAME.pid
# (the caller adds it to PIDS: this runs in a command substitution's subshell).
start_gateway() {
  local name=$1 sub=$2; shift 2
  "${ALONE[@]}" "$W" "$sub" --listen 127.0.0.1:0 --control 127.0.0.1:0 --log-level warn "$@" \
    > "$OUT/$name.out" 2> "$OUT/$name.err" & echo $! > "$OUT/$name.pid"
  wait_for "$OUT/$name.out" "listen=" | sed 's/.*listen=\([^ ]*\).*/\1/'
}

# echo_rate URL: msgs/s of `wsgate bench echo` at 8 connections × 16 in flight, 64 B,
# for $DUR seconds; fails on any error or lost message.
echo_rate() {
  "${LOAD[@]}" "$W" bench echo "$1" -c 8 -k 16 -s 64 --duration "$DUR" --warmup 1 --json --no-progress \
    | python3 -c "import json,sys; d=json.load(sys.stdin); assert d['errors']+d['lost']==0, d; print(d['msgs_per_sec'])"
}
