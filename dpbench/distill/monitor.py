"""Validation during distillation: learning curves, and the checkpoint chosen on validation.

Every ``train.eval_every`` optimizer steps the student decodes ``train.eval_limit``
problems of ``train.eval_split`` (default ``validation``: never test) with
``train.eval_sampler`` at each parameter set of ``train.eval_params``; the results
go to ``train/log.jsonl``. With ``train.select_best`` the trainable weights of the
best evaluation so far are kept in ``train/best/`` and become ``final/``: the
highest accuracy at the first parameter set, fewer NFE on a tie (the early stopping
the dParallel recipe leaves implicit in its fixed epoch count).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch

from .config import TrainConfig

BEST = "best"


class Validator:
    def __init__(self, task, tokenizer, tc: TrainConfig, out: Path, gen_length: int) -> None:
        if task is None:
            raise ValueError("train.eval_every needs the task (pass task= to train())")
        self.task, self.tok, self.tc, self.out = task, tokenizer, tc, out
        self.gen_length = gen_length
        self.best: dict[str, Any] | None = None

    def evaluate(self, student) -> list[dict[str, Any]]:
        """One result per parameter set: accuracy, mean NFE, the parameters."""
        from ..train.pretrain import evaluate

        was_training = student.module.training
        student.module.eval()
        rows = []
        with torch.no_grad():
            for params in self.tc.eval_params or [{}]:
                m = evaluate(student, self.tok, self.task, self.tc.eval_sampler, limit=self.tc.eval_limit,
                             batch_size=self.tc.eval_batch_size, split=self.tc.eval_split,
                             **{"gen_length": self.gen_length, **params})
                rows.append({"sampler": self.tc.eval_sampler, **{k: v for k, v in params.items()},
                             "n": m["n"], "accuracy": m["accuracy"], "mean_nfe": m["mean_nfe"]})
        student.module.train(was_training)
        return rows

    @staticmethod
    def score(rows: list[dict[str, Any]]) -> tuple[float, float]:
        return (rows[0]["accuracy"], -rows[0]["mean_nfe"])

    def consider(self, step: int, rows: list[dict[str, Any]], weights: dict[str, torch.Tensor]) -> bool:
        """Keep ``weights`` as the best if this evaluation beats the best so far; True if it did."""
        if not self.tc.select_best:
            return False
        if self.best is not None and self.score(rows) <= tuple(self.best["score"]):
            return False
        from safetensors.torch import save_file

        tmp, dst = self.out / f".tmp-{BEST}", self.out / BEST
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        save_file(weights, str(tmp / "trainable.safetensors"))
        self.best = {"step": step, "score": list(self.score(rows)), "evals": rows}
        (tmp / "best.json").write_text(json.dumps(self.best, indent=2))
        shutil.rmtree(dst, ignore_errors=True)
        tmp.rename(dst)
        return True

    def restore(self, best: dict[str, Any] | None) -> None:
        """The best record of a resumed run (its weights are in ``train/best/``)."""
        self.best = best if best and (self.out / BEST / "trainable.safetensors").exists() else None

    def load_best(self, model) -> dict[str, Any] | None:
        """Put the best weights into ``model``; returns the best record (None: nothing selected)."""
        if self.best is None:
            return None
        from safetensors.torch import load_file

        model.load_state_dict(load_file(str(self.out / BEST / "trainable.safetensors")), strict=False)
        return self.best
