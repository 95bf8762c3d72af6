"""Data-parallel runs: shard documents over ranks, each rank writes its own records.

Works under any launcher that sets ``RANK``/``WORLD_SIZE`` (``torchrun``,
``accelerate launch``): gloo on CPU, nccl on GPU. Rank r decodes documents
r, r + world, r + 2 * world, ... and appends to ``samples.rank{r}.jsonl``;
after a barrier, rank 0 merges every rank's records into ``samples.jsonl`` in
document order and removes the rank files. Records never depend on the
launch: at temperature 0 every sample's tokens and NFE are what it gets alone.

``dpbench run --num-processes N`` relaunches itself under torchrun
(`relaunch_with_torchrun`) so that nothing outlives it: torchrun starts each
rank in a POSIX session of its own, where killing the launcher or its process
group would not reach them. So the torchrun agent dies with the launcher and
every rank dies with the agent (``PR_SET_PDEATHSIG``, checked against a race at
start-up), and torchrun's log directory and ``TMPDIR`` are a private directory
the launcher removes (no ``/tmp/torchelastic_*`` is made; one left by a
launcher killed with SIGKILL is removed by the next launch).
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

LAUNCHER_ENV, AGENT_ENV = "DPBENCH_LAUNCHER_PID", "DPBENCH_AGENT_PID"
_TMP_PREFIX = "dpbench-torchrun-"
PR_SET_PDEATHSIG = 1

# The torchrun agent: dies with the launcher, tells its ranks its pid, then is torchrun.
_AGENT = f"""
import ctypes, os, runpy, signal, sys
ctypes.CDLL(None, use_errno=True).prctl({PR_SET_PDEATHSIG}, signal.SIGKILL, 0, 0, 0)
if os.getppid() != int(os.environ[{LAUNCHER_ENV!r}]):
    os._exit(1)  # the launcher died before the line above took effect
os.environ[{AGENT_ENV!r}] = str(os.getpid())
sys.argv = ["torchrun", *sys.argv[1:]]
runpy.run_module("torch.distributed.run", run_name="__main__", alter_sys=True)
"""


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
            import torch

            torch.distributed.barrier()


def die_with_agent() -> None:
    """In a rank started by `relaunch_with_torchrun`: die (SIGKILL) when the torchrun agent dies.

    Called first thing by the CLI. No-op elsewhere.
    """
    agent = os.environ.get(AGENT_ENV)
    if not agent or sys.platform != "linux":
        return
    import ctypes

    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != int(agent):
        os._exit(1)  # the agent is already gone


def init_distributed(device: str | None = None) -> Dist:
    """Read the launcher's environment and start the process group if there is more than one rank."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    import torch

    die_with_agent()
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
    from .records import SAMPLES, append_records, open_append, read_samples

    main = out / SAMPLES
    parts = sorted(out.glob("samples.rank*.jsonl"))
    if not parts:
        return 0
    have = {r["doc_id"] for r in read_samples(main, repair=True)}
    new: dict[str, dict[str, Any]] = {}
    for part in parts:
        for rec in read_samples(part):
            if rec["doc_id"] not in have:
                new[rec["doc_id"]] = rec
    with open_append(main) as fh:
        append_records(fh, (new[d] for d in sorted(new, key=lambda d: doc_order.get(d, sys.maxsize))))
    for part in parts:  # merged and synced: the rank copies are no longer needed
        part.unlink()
    return len(new)


def _remove_stale_dirs(base: str) -> None:
    """Private directories of earlier launchers that were killed before they could remove them."""
    for d in Path(base).glob(f"{_TMP_PREFIX}*"):
        try:
            pid = int(d.name[len(_TMP_PREFIX) :].split("-", 1)[0])
            os.kill(pid, 0)
        except ProcessLookupError:
            shutil.rmtree(d, ignore_errors=True)
        except (ValueError, PermissionError, OSError):
            continue


def relaunch_with_torchrun(num_processes: int, argv: list[str]) -> int:
    """Run ``python -m dpbench <argv>`` under torchrun with ``num_processes`` ranks; returns its exit code."""
    import subprocess

    base = tempfile.gettempdir()
    _remove_stale_dirs(base)
    tmp = tempfile.mkdtemp(prefix=f"{_TMP_PREFIX}{os.getpid()}-", dir=base)
    env = {**os.environ, "TMPDIR": tmp, LAUNCHER_ENV: str(os.getpid())}
    cmd = [sys.executable, "-c", _AGENT, f"--log-dir={tmp}/logs", "--standalone", f"--nproc_per_node={num_processes}",
           "-m", "dpbench", *argv]

    def stop(signum, _frame):
        raise SystemExit(128 + signum)  # -> finally: the agent is killed, its ranks die with it

    old = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGHUP)}
    proc = None
    try:
        proc = subprocess.Popen(cmd, env=env)
        return proc.wait()
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        for s, h in old.items():
            signal.signal(s, h)
        shutil.rmtree(tmp, ignore_errors=True)
