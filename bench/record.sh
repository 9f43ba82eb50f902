#!/usr/bin/env bash
# What recording history costs the proxy, in one run, against baselines measured at
# the same time (issue 14). The proxies run on their own core, their recorder and
# store writer threads with them, so history's CPU counts; the load generator and
# the echo upstream share the other core.
#
#   the disk: sequential write speed where history goes (1 GiB, fdatasync)
#   store writer alone: frames/s into SQLite (>= 2 M), PostgreSQL (>= 500 k, when
#     WSGATE_TEST_POSTGRES is set, e.g. after `eval "$(scripts/pg-start)"`); the
#     first /messages page of a 1 M-frame session (< 50 ms)
#   three proxies: --no-store, the default (SQLite, --record drop) and --record
#     strict, through three workloads, ROUNDS rounds interleaved:
#       64 connections ping-pong, 64 B         default/no-store >= 0.85
#       8 connections x 16 in flight, 64 B     default/no-store >= 0.85
#       4 connections x 4 in flight, 64 KiB    default/no-store >= 0.6
#     each with the frames history kept and dropped, and the payload MB/s written
#     beside the disk's speed; strict (every frame kept, traffic waits) for scale
#   sustained RATE msgs/s (default 50 000) for DUR_RATE s (default 30) through the
#     default proxy: every frame stored, none dropped
#
# Usage: bench/record.sh   (DUR seconds per run, default 5; ROUNDS, default 3)
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
DUR=${DUR:-5}
ROUNDS=${ROUNDS:-3}
DUR_RATE=${DUR_RATE:-30}
RATE=${RATE:-50000}
cargo build --release --quiet -p wsgate -p wsgate-echo-server
cargo build --release --quiet -p wsgate-store --example store_bench
W=target/release/wsgate
ulimit -n "$(ulimit -Hn)"

echo "== the disk: sequential write speed in $OUT (1 GiB, then fdatasync)"
DISK=$(python3 - "$OUT/disk.bin" <<'PY'
import os, sys, time
block = os.urandom(1 << 20)
t = time.perf_counter()
with open(sys.argv[1], "wb") as f:
    for _ in range(1024):
        f.write(block)
    f.flush()
    os.fdatasync(f.fileno())
print(f"{1024 * 1.048576 / (time.perf_counter() - t):.0f}")
PY
)
rm -f "$OUT/disk.bin"
echo "sequential write: $DISK MB/s"

echo "== store writers alone (the recorder's batches of 16 384, 64-256 B payloads, 100 sessions)"
# check FILE PATTERN-BEFORE-NUMBER OP TARGET WHAT: prints PASS/FAIL for a figure store_bench printed.
writers=0
check() {
  python3 - "$@" <<'PY' || writers=1
import re, sys
text, pat, op, target, what = open(sys.argv[1]).read(), sys.argv[2], sys.argv[3], float(sys.argv[4]), sys.argv[5]
v = float(re.search(pat + r"([0-9.]+)", text).group(1))
ok = v >= target if op == ">=" else v < target
print(f"  {what}: {v:,.2f} (target {op} {target:,.0f})  {'PASS' if ok else 'FAIL'}")
sys.exit(0 if ok else 1)
PY
}
target/release/examples/store_bench "sqlite://$OUT/writer.db" 1000000 | tee "$OUT/sqlite.txt"
check "$OUT/sqlite.txt" "= " ">=" 2000000 "SQLite frames/s"
if [ -n "${WSGATE_TEST_POSTGRES:-}" ]; then
  target/release/examples/store_bench "$WSGATE_TEST_POSTGRES" 500000 | tee "$OUT/pg.txt"
  check "$OUT/pg.txt" "= " ">=" 500000 "PostgreSQL frames/s"
else
  echo "  PostgreSQL: not measured (set WSGATE_TEST_POSTGRES, e.g. eval \"\$(scripts/pg-start)\")"
fi
echo "== one session of 1 000 000 frames: its first and a middle /messages page"
SESSIONS=1 target/release/examples/store_bench "sqlite://$OUT/long.db" 1000000 | tee "$OUT/long.txt"
check "$OUT/long.txt" "first page " "<" 50 "first page, ms"

"${LOAD[@]}" target/release/wsgate-echo-server 127.0.0.1:0 > "$OUT/echo.out" & PIDS+=($!)
ECHO=$(wait_for "$OUT/echo.out" "listening on" | awk '{print $3}')
start_proxy() { # NAME ARGS...
  local name=$1; shift
  "${ALONE[@]}" "$W" proxy --upstream "ws://$ECHO" --listen 127.0.0.1:0 --control 127.0.0.1:0 --log-level warn "$@" \
    > "$OUT/$name.out" 2>"$OUT/$name.err" & PIDS+=($!)
  wait_for "$OUT/$name.out" "listen=" >/dev/null
}
start_proxy off --no-store
start_proxy rec --store "sqlite://$OUT/rec.db"
start_proxy strict --store "sqlite://$OUT/strict.db" --record strict
addr() { sed -n "s/.*$2=\([^ ]*\).*/\1/p" "$OUT/$1.out" | head -1; }

# NAME's committed rows, payload bytes and recorder drops, once its recorder has
# caught up (the row count stops moving: it commits at least every 100 ms).
metric() { curl -s "http://$(addr "$1" control)/metrics" | awk -v m="$2" '$1 == m {print $2}'; }
store_state() {
  local prev=-1 rows; rows=$(metric "$1" wsgate_store_rows_total)
  until [ "$rows" = "$prev" ]; do sleep 0.3; prev=$rows; rows=$(metric "$1" wsgate_store_rows_total); done
  echo "$rows $(metric "$1" wsgate_store_payload_bytes_total) $(metric "$1" 'wsgate_observer_dropped_total{observer="store"}')"
}
run() { # NAME ARGS...: msgs/s through proxy NAME
  local name=$1; shift
  "${LOAD[@]}" "$W" bench echo "ws://$(addr "$name" listen)/$name" "$@" --duration "$DUR" --warmup 1 --json --no-progress \
    | python3 -c "import json,sys; d=json.load(sys.stdin); assert d['errors']+d['lost']==0, d; print(d['msgs_per_sec'])"
}

echo "== proxies: no-store, default (recording, --record drop), strict; ${ROUNDS} rounds of ${DUR}s each"
: > "$OUT/runs"
for w in "pp:-c 64 -k 1 -s 64" "pipe:-c 8 -k 16 -s 64" "big:-c 4 -k 4 -s 65536 --binary"; do
  name=${w%%:*}; args=${w#*:}
  for i in $(seq "$ROUNDS"); do
    for p in off rec strict; do
      before="0 0 0"; [ "$p" = off ] || before=$(store_state "$p")
      start=$(date +%s.%N)
      # shellcheck disable=SC2086
      rate=$(run "$p" $args)
      after="0 0 0"; [ "$p" = off ] || after=$(store_state "$p")
      echo "$name $p $rate $start $(date +%s.%N) $before $after" >> "$OUT/runs"
    done
  done
done

tables=0
python3 - "$OUT/runs" "$DISK" <<'PY' || tables=1
import sys, statistics
runs = [l.split() for l in open(sys.argv[1])]
disk = float(sys.argv[2])
ok = True
print(f"{'workload':34} {'no-store':>10} {'default':>10} {'ratio':>6} {'target':>7}       "
      f"{'kept':>6} {'stored MB/s':>11} {'strict':>10} {'ratio':>6} {'stored MB/s':>11}")
for name, label, target in [("pp", "64 conns ping-pong, 64 B", 0.85), ("pipe", "8 conns x 16 in flight, 64 B", 0.85),
                            ("big", "4 conns x 4 in flight, 64 KiB", 0.6)]:
    def of(p):
        rs = [r for r in runs if r[0] == name and r[1] == p]
        rate = statistics.median(float(r[2]) for r in rs)
        rows = sum(float(r[8]) - float(r[5]) for r in rs)
        byts = sum(float(r[9]) - float(r[6]) for r in rs)
        drops = sum(float(r[10]) - float(r[7]) for r in rs)
        secs = sum(float(r[4]) - float(r[3]) for r in rs)
        return rate, rows, byts, drops, secs
    off = of("off")[0]
    rec, rows, byts, drops, secs = of("rec")
    srate, _, sbytes, _, ssecs = of("strict")
    ratio = rec / off
    passed = ratio >= target
    ok &= passed
    kept = rows / max(rows + drops, 1)
    print(f"{label:34} {off:10,.0f} {rec:10,.0f} {ratio:6.2f} {'>= ' + str(target):>7} {'PASS' if passed else 'FAIL'}  "
          f"{kept:6.0%} {byts / secs / 1e6:11.1f} {srate:10,.0f} {srate / off:6.2f} {sbytes / ssecs / 1e6:11.1f}")
print(f"(msgs/s: medians of the rounds' echoed messages; kept: frames the default proxy's history kept, the rest dropped "
      f"and counted; stored MB/s: message payload committed per second of the runs, beside the disk's {disk:,.0f} MB/s "
      f"sequential write speed; strict keeps every frame and traffic waits for it)")
sys.exit(0 if ok else 1)
PY

echo "== sustained $RATE msgs/s for ${DUR_RATE}s through a fresh default proxy"
# Its own store, started once the gigabytes the runs above wrote are on disk: the
# page cache's writeback would otherwise stall this writer, which measures the disk
# catching up rather than the recorder.
sync
start_proxy sustained --store "sqlite://$OUT/sustained.db"
read -r rows0 _ drop0 < <(store_state sustained)
"${LOAD[@]}" "$W" bench echo "ws://$(addr sustained listen)/rate" -c 32 -k 4 -s 128 --rate "$RATE" --duration "$DUR_RATE" \
  --json --no-progress > "$OUT/rate.json"
read -r rows1 _ drop1 < <(store_state sustained)
sustained=0
python3 - "$OUT/rate.json" "$rows0" "$rows1" "$drop0" "$drop1" "$RATE" <<'PY' || sustained=1
import json, sys
d = json.load(open(sys.argv[1]))
rows = float(sys.argv[3]) - float(sys.argv[2]); drops = float(sys.argv[5]) - float(sys.argv[4])
# Every message sent and every echo is a frame through the proxy; the sessions' own
# rows (a session row and its lifecycle events) come on top.
frames = d["messages_sent"] + d["messages_received"]
ok = drops == 0 and rows >= frames and d["errors"] + d["lost"] == 0 and d["msgs_per_sec"] >= 0.95 * float(sys.argv[6])
print(f"echoed {d['msgs_per_sec']:,.0f} msgs/s (errors {d['errors']}, lost {d['lost']}); frames through the proxy "
      f"{frames:,.0f}; rows committed {rows:,.0f}; recorder drops {drops:,.0f} (target: all stored, 0 dropped)  "
      f"{'PASS' if ok else 'FAIL'}")
sys.exit(0 if ok else 1)
PY
exit $((tables | sustained | writers))
