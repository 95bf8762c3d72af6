"""`dpbench bench` of two checkouts, interleaved: per-step overhead before vs after a change.

Runs the same bench command from the checkout under test (this script's repository) and from
another one (``--before``, e.g. a `git worktree add /tmp/before <commit>`), alternating
``--repeats`` times in one sitting, so load on a shared machine hits both alike. Prints, per
sampler x cache x step path x batch size, the median over repeats of the time outside the model
per forward and of the seconds per sample, before and after.

    git worktree add /tmp/before 9f94629
    python scripts/bench_before_after.py --before /tmp/before --repeats 3 --out results/bench/loop-before-after \\
        -- -m tiny-arith -s baseline,dparallel,entropy_bound --cache none,dual --step kernel,tensor -b 1,32 -n 64 --threads 1
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]


def run(tree: Path, out: Path, bench_args: list[str]) -> list[dict]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    cmd = [sys.executable, "-m", "dpbench", "bench", *bench_args, "--out", str(out)]
    subprocess.run(cmd, cwd=tree, env=env, check=True, stdout=subprocess.DEVNULL)
    return json.loads((out / "bench.json").read_text())["rows"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", type=Path, required=True, help="Checkout of the code before the change.")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", type=Path, default=Path("runs/bench-before-after"))
    ap.add_argument("bench_args", nargs=argparse.REMAINDER, help="-- then the `dpbench bench` arguments")
    args = ap.parse_args()
    bench_args = [a for a in args.bench_args if a != "--"]
    rows: dict[str, list[list[dict]]] = {"before": [], "after": []}
    for r in range(args.repeats):
        for name, tree in (("before", args.before.resolve()), ("after", HERE)):
            rows[name].append(run(tree, (args.out / f"{name}-{r}").resolve(), bench_args))
            print(f"round {r + 1}/{args.repeats}: {name} done", file=sys.stderr)

    def key(row):
        return row["sampler"], row["cache"], row.get("step", "kernel"), row["batch_size"]

    def med(name, k, field):
        return statistics.median(next(x[field] for x in rep if key(x) == k) for rep in rows[name])

    print(f"medians over {args.repeats} interleaved repeats; bench {' '.join(bench_args)}")
    print("| sampler | cache | step | batch | us outside/fwd before | after | ms/sample before | after |")
    print("|---|---|---|---|---|---|---|---|")
    for k in [key(x) for x in rows["after"][0]]:
        b_us, a_us = med("before", k, "overhead_us_per_forward"), med("after", k, "overhead_us_per_forward")
        b_s, a_s = med("before", k, "seconds_per_sample"), med("after", k, "seconds_per_sample")
        print(f"| {' | '.join(map(str, k))} | {b_us:.0f} | {a_us:.0f} | {1e3 * b_s:.2f} | {1e3 * a_s:.2f} |")


if __name__ == "__main__":
    main()
