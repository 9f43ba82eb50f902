"""Summarises alternating bench rounds: FILE holds one "baseline measured" pair of
msgs/s per line. Prints each round, the median round ratio and the overall ratio
(sum over sum) against TARGET; exits 1 when the overall ratio misses it.

Usage: python3 bench/rounds.py FILE BASELINE_NAME MEASURED_NAME RATIO_NAME TARGET
"""
import statistics
import sys

path, base_name, measured_name, ratio_name, target = sys.argv[1:6]
target = float(target)
rows = [tuple(map(float, line.split())) for line in open(path)]
for i, (a, b) in enumerate(rows, 1):
    print(f"round {i}: {base_name} {a:,.0f} msgs/s, {measured_name} {b:,.0f} msgs/s, ratio {b / a:.2f}")
print(f"median round ratio {statistics.median(b / a for a, b in rows):.2f}")
overall = sum(b for _, b in rows) / sum(a for a, _ in rows)
ok = overall >= target
print(f"overall: {ratio_name} = {overall:.2f} (target >= {target})  {'PASS' if ok else 'FAIL'}")
sys.exit(0 if ok else 1)
