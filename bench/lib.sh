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
