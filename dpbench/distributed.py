"""Data-parallel runs: shard documents over ranks, each rank writes its own records.

Works under any launcher that sets ``RANK``/``WORLD_SIZE`` (``torchrun``,
``accelerate launch``): gloo on CPU, nccl on GPU. Rank r decodes documents
r, r + world, r + 2 * world, ... and appends to ``samples.rank{r}.jsonl``;
after a barrier, rank 0 merges every rank's records into ``samples.jsonl`` in
document order and removes the rank files. Records never depend on the
launch: at temperature 0 every sample's tokens and NFE are what it gets alone.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world_size > 1:
            torch.distributed.barrier()


def init_distributed(device: str | None = None) -> Dist:
    """Read the launcher's environment and start the process group if there is more than one rank."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() and (device is None or str(device).startswith("cuda"))
    if use_cuda:
        torch.cuda.set_device(local)
    if not torch.distributed.is_initialized():
        torch.distributed.init_process_group("nccl" if use_cuda else "gloo")
    return Dist(rank, world, local)


def rank_file(out: Path, rank: int) -> Path:
    return out / f"samples.rank{rank}.jsonl"


def merge_rank_records(out: Path, doc_order: dict[str, int]) -> int:
    """Append every rank file's records missing from ``samples.jsonl`` (in document order); returns how many."""
    from .records import SAMPLES, append_records, read_records

    main = out / SAMPLES
    have = {r["doc_id"] for r in read_records(main, repair=True)}
    parts = sorted(out.glob("samples.rank*.jsonl"))
    new: dict[str, dict[str, Any]] = {}
    for part in parts:
        for rec in read_records(part):
            if rec["doc_id"] not in have:
                new[rec["doc_id"]] = rec
    with open(main, "a", encoding="utf-8") as fh:
        append_records(fh, (new[d] for d in sorted(new, key=lambda d: doc_order.get(d, sys.maxsize))))
    for part in parts:  # merged and synced: the rank copies are no longer needed
        part.unlink()
    return len(new)


def relaunch_with_torchrun(num_processes: int, argv: list[str]) -> int:
    """Run ``python -m dpbench <argv>`` under torchrun with ``num_processes`` ranks; returns its exit code."""
    import subprocess

    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={num_processes}",
           "-m", "dpbench", *argv]
    return subprocess.call(cmd)
