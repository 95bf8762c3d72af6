"""Seconds per teacher trajectory for several decoding settings, side by side on the same prompts.

    OMP_NUM_THREADS=1 nice -n 5 .venv/bin/python scripts/measure_trajectories.py --limit 400 --rounds 2 \
        --out results/distill/trajectory-speed

Each setting runs `dpbench.distill.generate_trajectories` (the distill stage itself, writing
its files to a scratch directory) on the first ``--limit`` arith training prompts; the
settings are interleaved round by round so a shared machine's load falls on all of them
alike. ``old`` is the recipe before issue 18 (baseline at the task's defaults, batch 100,
every prompt decoded, duplicates too). Reports seconds per decoded prompt, the kept
(correct) share and the share of answers identical to ``old``'s text.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

SETTINGS = {
    "old": ("baseline", {}, 100),
    "baseline+early_stop": ("baseline", {"early_stop": True}, 100),
    "baseline+early_stop+dual": ("baseline", {"early_stop": True, "cache": "dual"}, 100),
    "dparallel0.5+early_stop": ("dparallel", {"early_stop": True, "threshold": 0.5}, 100),
    "dparallel0.5+early_stop+dual": ("dparallel", {"early_stop": True, "threshold": 0.5, "cache": "dual"}, 100),
    "multiblock0.5": ("multiblock", {"threshold": 0.5}, 100),
    "multiblock0.5+early_stop": ("multiblock", {"threshold": 0.5, "early_stop": True}, 100),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--limit", type=int, default=400)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--teacher", default="tiny-arith")
    ap.add_argument("--settings", default=",".join(SETTINGS))
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from dpbench.distill.trajectories import _read_jsonl, generate_trajectories
    from dpbench.models import load_model
    from dpbench.tasks import get_task

    lm, tok = load_model(args.teacher, device="cpu")
    task = get_task("arith")
    names = args.settings.split(",")
    times: dict[str, list[float]] = {n: [] for n in names}
    texts: dict[str, dict[str, str]] = {}
    kept: dict[str, int] = {}
    for r in range(args.rounds):
        for name in names:
            sampler, params, bs = SETTINGS[name]
            with tempfile.TemporaryDirectory() as d:
                t0 = time.perf_counter()
                stats = generate_trajectories(lm, tok, task, d, limit=args.limit, batch_size=bs, sampler=sampler,
                                              params=params, teacher=args.teacher, progress=False)
                times[name].append(time.perf_counter() - t0)
                rows = _read_jsonl(Path(d) / "trajectories.jsonl") + _read_jsonl(Path(d) / "rejected.jsonl")
                texts[name] = {row["doc_id"]: row["llm_response"] for row in rows}
                kept[name] = stats.kept
            print(f"round {r + 1} {name}: {times[name][-1]:.1f} s", flush=True)
    ref = texts.get("old")
    base = statistics.median(times["old"]) if "old" in times else None
    rows = []
    for name in names:
        med = statistics.median(times[name])
        same = sum(texts[name][k] == v for k, v in ref.items()) / len(ref) if ref else None
        rows.append({"setting": name, "sampler": SETTINGS[name][0], "params": SETTINGS[name][1],
                     "batch_size": SETTINGS[name][2], "prompts": args.limit, "seconds_median": round(med, 2),
                     "ms_per_trajectory": round(1000 * med / args.limit, 1), "speedup_vs_old": round(base / med, 2)
                     if base else None, "kept": kept[name], "same_text_as_old": None if same is None else round(same, 4),
                     "all_seconds": [round(t, 2) for t in times[name]]})
    for row in rows:
        print(json.dumps(row))
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        meta = {"threads": args.threads, "rounds": args.rounds, "limit": args.limit, "teacher": args.teacher,
                "torch": torch.__version__, "note": "2 CPU cores shared with other jobs; interleaved rounds"}
        (args.out / "speed.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
