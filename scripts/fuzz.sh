#!/usr/bin/env bash
# Builds every cargo-fuzz target in fuzz/ and runs each briefly on its committed
# corpus (docs/fuzzing.md). Fails on any crash, timeout or out-of-memory, naming the
# target and the input that caused it.
#
# Usage: scripts/fuzz.sh [SECONDS]     seconds per target (default $FUZZ_SECONDS, or 10)
#        FUZZ_TARGETS="utf8 deflate" scripts/fuzz.sh    only these targets
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

secs=${1:-${FUZZ_SECONDS:-10}}
[[ $secs =~ ^[0-9]+$ ]] || { echo "fuzz: SECONDS must be a whole number, got '$secs'" >&2; exit 2; }

say() { printf '\n== %s\n' "$*" >&2; }

# libFuzzer needs `-Z` flags (sanitizer, coverage passes). Stable rustc accepts them
# with RUSTC_BOOTSTRAP=1; no nightly toolchain is needed. Scoped to this script.
export RUSTC_BOOTSTRAP=1

if ! cargo fuzz --version >/dev/null 2>&1; then
  say "installing cargo-fuzz"
  # A debug build installs in half the time and is only a thin driver around cargo.
  cargo install --locked --debug cargo-fuzz
fi

cd fuzz
# A short run needs a quick build more than the last bit of speed: no
# AddressSanitizer (the crates deny unsafe code) and opt-level 1, with debug
# assertions and overflow checks kept. Its own target dir, so the full build that
# longer runs use (`cargo fuzz run`, docs/fuzzing.md) is not thrown away.
export CARGO_PROFILE_RELEASE_OPT_LEVEL=1
build=(--sanitizer none --debug-assertions --target-dir "$root/fuzz/target/smoke")
say "building fuzz targets"
cargo fuzz build "${build[@]}"

read -r -a targets <<<"${FUZZ_TARGETS:-$(cargo fuzz list | tr '\n' ' ')}"
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

say "running ${#targets[@]} targets for ${secs}s each"
failed=()
for t in "${targets[@]}"; do
  corpus="$root/fuzz/corpus/$t"
  if [[ ! -d $corpus ]]; then
    echo "fuzz: $t has no seed corpus at fuzz/corpus/$t (add a few small seeds)" >&2
    failed+=("$t (no corpus)")
    continue
  fi
  mkdir -p "$scratch/$t" "$root/fuzz/artifacts/$t"
  log="$scratch/$t.log"
  # libFuzzer writes new inputs into the FIRST corpus directory: the scratch one, so
  # the committed seeds stay as they are. -timeout: one input running over 10 s is a
  # hang; -rss_limit_mb: the sanitizer's own bound on memory.
  dict=()
  [[ -f $root/fuzz/dict/$t.dict ]] && dict=(-dict="$root/fuzz/dict/$t.dict")
  if cargo fuzz run "${build[@]}" "$t" "$scratch/$t" "$corpus" -- \
      -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 "${dict[@]}" \
      >"$log" 2>&1; then
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    speed=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | cut -d' ' -f2 || true)
    printf 'fuzz: %-14s ok   %9s runs  %7s exec/s  cov %s\n' "$t" "${runs:-?}" "${speed:-?}" "${cov:-?}"
  else
    artifact=$(grep -o "Test unit written to [^ ]*" "$log" | tail -1 | sed 's/Test unit written to //' || true)
    echo "fuzz: $t FAILED; last lines of its log:" >&2
    tail -n 40 "$log" >&2
    if [[ -n $artifact ]]; then
      echo "fuzz: $t: crashing input: $artifact" >&2
      echo "fuzz:   reproduce: (cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run $t $artifact)" >&2
      echo "fuzz:   then minimise, fix and add a regression test: docs/fuzzing.md" >&2
    fi
    failed+=("$t${artifact:+ ($artifact)}")
  fi
done

if ((${#failed[@]})); then
  echo "fuzz: ${#targets[@]} targets, ${#failed[@]} crashes: ${failed[*]}"
  exit 1
fi
echo "fuzz: ${#targets[@]} targets, 0 crashes"
