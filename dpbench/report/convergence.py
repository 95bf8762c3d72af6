"""The certainty-convergence chart: when each answer position is committed, per decoder.

Top, one strip per run: the same example sample's answer, one cell per position (left to
right), coloured by the forward pass that committed it (one colour scale for every run,
logarithmic so that steps 1, 2, 4, 8 ... stay apart), with the token written in it.
Hatched cells are EOS padding after the answer; dotted lines are block boundaries.
Bottom: the mean commit step per answer position over every traced sample of each run
(shaded: the 10th-90th percentile), on the same position axis. Under the fixed-step
baseline the steps climb position after position; a parallel decoder commits many
positions in one step only where the model is already certain: the sequential
certainty convergence dParallel's distillation targets.
"""

from __future__ import annotations

import numpy as np
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

CMAP = "viridis"


def _steps(t: dict) -> np.ndarray:
    return np.asarray(t["step"], float)


def _answer_len(t: dict) -> int:
    return int(t.get("gen_tokens", len(t["step"])))


def example_doc(traces: dict[str, list[dict]]) -> str | None:
    """The first doc_id traced in every run (None when the runs traced different documents)."""
    ids = [[t["doc_id"] for t in ts] for ts in traces.values() if ts]
    if not ids:
        return None
    common = [d for d in ids[0] if all(d in other for other in ids[1:])]
    return common[0] if common else None


def _token(text: str) -> str:
    return {"\n": "↵", " ": "␣", "\t": "⇥"}.get(text, text.replace("\n", "↵"))[:3]


def convergence_chart(traces: dict[str, list[dict]], block_length: int | None = None, caption: str | None = None) -> Figure:
    """``traces``: run label -> its traced samples (``trace.jsonl`` rows). See the module doc."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from .caption import add_caption

    traces = {k: v for k, v in traces.items() if v}
    runs = list(traces)
    doc = example_doc(traces)
    example = {r: next((t for t in traces[r] if t["doc_id"] == doc), traces[r][0]) for r in runs}
    width_pos = max(len(example[r]["step"]) for r in runs)
    hi = max(2.0, max(_steps(t).max() for ts in traces.values() for t in ts))
    norm = LogNorm(vmin=1, vmax=hi)
    text_ok = width_pos <= 96  # token text in the cells only while cells are wide enough to read
    fig = Figure(figsize=(min(16.0, max(8.0, 0.17 * width_pos + 3.0)), 1.6 + 0.62 * len(runs) + 3.0), layout="constrained")
    FigureCanvasAgg(fig)
    grid = fig.add_gridspec(len(runs) + 1, 1, height_ratios=[0.62] * len(runs) + [3.0])
    strips = [fig.add_subplot(grid[i, 0]) for i in range(len(runs))]
    mean_ax = fig.add_subplot(grid[len(runs), 0], sharex=strips[0])
    filled_without_forward = False
    for ax, run in zip(strips, runs):
        t = example[run]
        step = _steps(t)
        n = len(step)
        shown = np.where(step > 0, step, np.nan)
        filled_without_forward |= bool((step == 0).any())
        ax.imshow(shown[None, :], cmap=CMAP, norm=norm, aspect="auto", extent=(-0.5, n - 0.5, 0, 1),
                  interpolation="nearest")
        ans = _answer_len(t)
        if ans < n:  # EOS padding: hatched, still coloured by its step
            ax.add_patch(_hatch(ans - 0.5, n - ans))
        if text_ok:
            texts = t.get("token_text") or [""] * n
            for p in range(min(ans, n)):
                if step[p] <= 0:
                    continue
                light = norm(step[p]) > 0.6
                ax.text(p, 0.5, _token(texts[p]), ha="center", va="center", fontsize=7,
                        color="black" if light else "white", family="DejaVu Sans Mono")
        for b in range(block_length or n, n, block_length or n):
            ax.axvline(b - 0.5, color="0.85", lw=1.0, ls=":")
        ax.set_yticks([])
        ax.set_ylabel(f"{run}\nNFE {t['nfe']}", rotation=0, ha="right", va="center", fontsize=8)
        ax.tick_params(axis="x", labelbottom=False, length=0)
    for i, run in enumerate(runs):
        steps = np.stack([_pad(_steps(t), width_pos) for t in traces[run]])
        steps = np.where(steps > 0, steps, np.nan)
        x = np.arange(width_pos)
        mean = np.nanmean(steps, 0)
        # Line styles vary too: two decoders that commit alike draw on top of each other.
        mean_ax.plot(x, mean, color=f"C{i}", lw=1.6, ls=("-", "--", "-.", ":")[i % 4],
                     label=f"{run} ({len(traces[run])} samples)")
        if len(steps) > 1:
            mean_ax.fill_between(x, np.nanpercentile(steps, 10, 0), np.nanpercentile(steps, 90, 0), color=f"C{i}",
                                 alpha=0.15, linewidth=0)
    if block_length:
        for b in range(block_length, width_pos, block_length):
            mean_ax.axvline(b - 0.5, color="0.6", lw=0.8, ls=":")
    mean_ax.set_yscale("log")
    mean_ax.set_ylim(0.8, hi * 1.3)
    ticks = _pow2_ticks(hi)
    mean_ax.set_yticks(ticks, [str(t) for t in ticks])
    mean_ax.minorticks_off()
    mean_ax.set_xlim(-0.5, width_pos - 0.5)
    mean_ax.set_xlabel("answer position (token index after the prompt)")
    mean_ax.set_ylabel("commit step (forward pass, log)")
    handles, _ = mean_ax.get_legend_handles_labels()
    handles += [Patch(facecolor="0.8", alpha=0.6, label="10th-90th percentile over samples"),
                Line2D([], [], color="0.6", ls=":", label=f"block boundary (block {block_length})" if block_length else "block boundary"),
                Patch(facecolor="0.5", hatch="///", edgecolor="white", label="EOS padding (strips above)")]
    if filled_without_forward:
        handles.append(Patch(facecolor="white", edgecolor="0.5", label="filled without a forward (early-stop EOS)"))
    mean_ax.legend(handles=handles, fontsize=7, loc="upper left", bbox_to_anchor=(1.005, 1.0), borderaxespad=0)
    mean_ax.grid(alpha=0.3, which="both", axis="y")
    from matplotlib.cm import ScalarMappable

    bar = fig.colorbar(ScalarMappable(norm, cmap=CMAP), ax=strips, label="commit step", fraction=0.025, pad=0.01)
    bar.set_ticks(ticks, labels=[str(t) for t in ticks])
    bar.minorticks_off()
    who = f"sample {doc}" if doc is not None else "first traced sample of each run"
    fig.suptitle(f"Certainty convergence: strips = {who}, one cell per answer position coloured by the forward pass "
                 f"that committed it; bottom = mean over the traced samples", fontsize=9)
    if caption:
        add_caption(fig, caption)
    return fig


def _hatch(x0: float, width: float) -> Patch:
    from matplotlib.patches import Rectangle

    return Rectangle((x0, 0), width, 1, fill=False, hatch="///", edgecolor="white", linewidth=0)


def _pow2_ticks(hi: float) -> list[int]:
    """1, 2, 4, ... up to ``hi`` (and ``hi`` itself): readable ticks on a log axis of forward passes."""
    ticks = [1]
    while ticks[-1] * 2 <= hi:
        ticks.append(ticks[-1] * 2)
    return ticks + ([int(hi)] if int(hi) > ticks[-1] * 1.3 else [])


def _pad(a: np.ndarray, n: int) -> np.ndarray:
    return a[:n] if len(a) >= n else np.concatenate([a, np.full(n - len(a), np.nan)])


__all__ = ["convergence_chart", "example_doc"]
