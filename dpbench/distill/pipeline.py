"""`run_distill`: the three stages wired together, each resumable and runnable alone.

Layout of ``--out DIR``::

    DIR/config.yaml                 the resolved settings of the last run
    DIR/trajectories/               trajectories.jsonl, rejected.jsonl, stats.json
    DIR/train/                      checkpoint-N/, log.jsonl, final/ (adapter or full weights)
    DIR/model/                      the merged student (load_model(DIR/model))
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import DistillConfig

STAGES = ("trajectories", "train", "merge")


@dataclass(frozen=True)
class DistillPaths:
    root: Path

    @property
    def trajectories(self) -> Path:
        return self.root / "trajectories"

    @property
    def train(self) -> Path:
        return self.root / "train"

    @property
    def model(self) -> Path:
        return self.root / "model"


def decode_params(task, cfg: DistillConfig) -> dict[str, Any]:
    """The parameters the teacher decodes with: the task's for that sampler, then the config's overrides."""
    return {**task.params_for(cfg.trajectories.sampler), **cfg.trajectories.params}


def answer_length(task, cfg: DistillConfig) -> int:
    if cfg.train.gen_length is not None:
        return cfg.train.gen_length
    params = decode_params(task, cfg)
    if "gen_length" not in params:
        raise ValueError(f"task {task.name!r} sets no gen_length; set train.gen_length in the config")
    return int(params["gen_length"])


def run_distill(
    teacher: str,
    task,
    out: str | Path,
    cfg: DistillConfig,
    *,
    stages: tuple[str, ...] = STAGES,
    device: str | None = None,
    name: str | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Run ``stages`` in order; ``task`` is a registered name or a `Task` instance."""
    from ..tasks import get_task

    bad = [s for s in stages if s not in STAGES]
    if bad:
        raise ValueError(f"unknown stage(s) {bad}; valid: {', '.join(STAGES)}")
    if isinstance(task, str):
        task = get_task(task, **cfg.task_options)
    if cfg.threads:
        import torch

        torch.set_num_threads(cfg.threads)
    paths = DistillPaths(Path(out))
    paths.root.mkdir(parents=True, exist_ok=True)
    cfg.save(paths.root / "config.yaml")
    report: dict[str, Any] = {}

    if "trajectories" in stages:
        report["trajectories"] = _trajectories(teacher, task, paths, cfg, device, progress)
    if "train" in stages:
        report["train"] = _train(teacher, task, paths, cfg, device, progress)
    if "merge" in stages:
        from .merge import merge

        stats_file = paths.trajectories / "stats.json"
        data = json.loads(stats_file.read_text()) if stats_file.exists() else {}
        info = {"task": task.name, "name": name or paths.root.name, "data": data}
        report["merge"] = {"model_dir": str(merge(teacher, paths.train, paths.model, info=info, device=device or "cpu"))}
    return report


def _trajectories(teacher, task, paths: DistillPaths, cfg: DistillConfig, device, progress) -> dict[str, Any]:
    from .trajectories import generate_trajectories, import_dataset

    tc = cfg.trajectories
    if tc.dataset:
        stats = import_dataset(tc.dataset, paths.trajectories)
    else:
        from ..models import load_model

        lm, tok = load_model(teacher, device=device)
        stats = generate_trajectories(
            lm, tok, task, paths.trajectories, split=tc.split, limit=tc.limit, batch_size=tc.batch_size,
            sampler=tc.sampler, params=tc.params, distinct=tc.distinct, seed=tc.seed, teacher=teacher,
            progress=progress)
    print(f"trajectories: {stats.summary()}")
    return {"kept": stats.kept, "rejected": stats.rejected, "seconds": stats.seconds, "path": stats.path}


def _train(teacher, task, paths: DistillPaths, cfg: DistillConfig, device, progress) -> dict[str, Any]:
    from accelerate import Accelerator

    from ..models import load_model
    from .train import FINAL, STATE, train, train_done, weight_dtype
    from .trajectories import load_trajectories

    if train_done(paths.train):
        record = json.loads((paths.train / FINAL / STATE).read_text())
        more = cfg.train.max_steps is not None and cfg.train.max_steps > record["step"]
        if not more:
            print(f"train: already finished ({record['step']} steps) in {paths.train / FINAL}; "
                  f"give a larger --max-steps to train on, or delete {paths.train} to start over")
            return {"steps": record["step"], "seconds": record["seconds"], "skipped": True}
    block = decode_params(task, cfg).get("block_length")
    if block is not None and int(block) != cfg.train.block_size:
        print(f"warning: train.block_size={cfg.train.block_size} differs from the task's block_length={block}; "
              f"the student learns blocks the sampler will not use")
    acc = Accelerator(cpu=device == "cpu", mixed_precision="bf16" if _cuda(device) else "no",
                      gradient_accumulation_steps=cfg.train.grad_accum)
    rows = load_trajectories(paths.trajectories)
    if cfg.trajectories.verify:
        rows = verified(task, rows, cfg.trajectories.split)
    lm, tok = load_model(teacher, device=acc.device, dtype=weight_dtype(cfg.train, acc.device))
    result = train(lm, tok, rows, paths.train, cfg, gen_length=answer_length(task, cfg), accelerator=acc,
                   progress=progress, task=task)
    print(f"train: {result.steps} steps in {result.seconds:.0f}s; last ce={result.metrics.get('ce', float('nan')):.4f} "
          f"entropy={result.metrics.get('entropy', float('nan')):.4f} -> {result.final_dir}")
    return {"steps": result.steps, "seconds": result.seconds, "metrics": result.metrics}


def verified(task, rows: list[dict[str, Any]], split: str) -> list[dict[str, Any]]:
    """The trajectories whose every step the task verifies (``trajectories.verify``), not only the answer."""
    check = getattr(task, "verify_solution", None)
    if check is None:
        raise ValueError(f"trajectories.verify: task {task.name!r} cannot check solutions step by step "
                         f"(it has no verify_solution); set verify: false")
    docs = {d.doc_id: d for d in task.docs(split)}
    missing = [r["doc_id"] for r in rows if r["doc_id"] not in docs]
    if missing:
        raise ValueError(f"trajectories.verify: {len(missing)} rows are not documents of {task.name}/{split} "
                         f"(e.g. {missing[0]!r}); an imported dataset cannot be verified")
    kept = [r for r in rows if check(docs[r["doc_id"]], r["llm_response"])]
    print(f"trajectories: {len(kept)} of {len(rows)} correct answers have every step right; training on those")
    return kept


def _cuda(device: str | None) -> bool:
    import torch

    return (device is None or str(device).startswith("cuda")) and torch.cuda.is_available()
