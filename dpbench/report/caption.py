"""The caption line every dpbench figure carries: model, hardware, batch size, n, dpbench version.

A figure copied into a paper or a chat without its report must still say what was
measured where: ``caption_text`` builds the line from the runs' manifests,
``add_caption`` writes it under a figure (leaving room for it in the layout).
"""

from __future__ import annotations

from typing import Any, Iterable


def _join(values: Iterable[Any], limit: int = 3) -> str:
    vals = [str(v) for v in dict.fromkeys(v for v in values if v not in (None, ""))]
    if not vals:
        return "?"
    return ", ".join(vals[:limit]) + (f" (+{len(vals) - limit} more)" if len(vals) > limit else "")


def device_words(manifest: dict[str, Any]) -> str:
    """``CPU x86_64 (2 cores, 1 torch thread)`` or the GPU's name, from a manifest's ``device_info``."""
    info = manifest.get("device_info") or {}
    kind = info.get("type") or manifest.get("device") or "?"
    if kind == "cpu":
        threads = info.get("torch_threads")
        t = f", {threads} torch thread{'s' if threads != 1 else ''}" if threads else ""
        cores = f"{info.get('cpu_count')} cores" if info.get("cpu_count") else ""
        inner = (cores + t).lstrip(", ")
        return f"CPU {info.get('name') or ''} ({inner})".replace("  ", " ") if inner else "CPU"
    return str(info.get("name") or kind)


def caption_text(manifests: list[dict[str, Any]], n: Iterable[int] = ()) -> str:
    """One line: models, device, batch sizes, samples per run, dpbench version and commit."""
    from .. import __version__

    versions = _join((m.get("versions") or {}).get("dpbench") for m in manifests)
    if versions == "?":
        versions = __version__
    commits = _join(str(m.get("git_commit"))[:7] + ("-dirty" if str(m.get("git_commit", "")).endswith("-dirty") else "")
                    for m in manifests if m.get("git_commit"))
    ns = [int(x) for x in n]
    n_text = f"n={ns[0]}" if ns and len(set(ns)) == 1 else f"n={min(ns)}-{max(ns)}" if ns else "n=?"
    parts = [f"model {_join(m.get('model') for m in manifests)}", f"task {_join(m.get('task') for m in manifests)}",
             _join(device_words(m) for m in manifests), f"batch {_join(m.get('batch_size') for m in manifests)}",
             f"{n_text} per run", f"dpbench {versions}" + (f" (git {commits})" if commits != "?" else "")]
    return " | ".join(parts)


def add_caption(fig, text: str, fontsize: float = 7.0) -> None:
    """Write ``text`` along the bottom of ``fig`` and shrink the constrained layout to keep it clear."""
    engine = fig.get_layout_engine()
    if engine is not None and hasattr(engine, "set"):
        engine.set(rect=(0, 0.045, 1, 0.955))
    fig.text(0.005, 0.008, text, fontsize=fontsize, color="0.3", ha="left", va="bottom")


__all__ = ["add_caption", "caption_text", "device_words"]
