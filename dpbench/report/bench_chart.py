"""The chart of `dpbench bench` (bench.png): seconds per sample and throughput per combination."""

from __future__ import annotations

from typing import Any


def bench_chart(result: dict[str, Any]):
    """Seconds per sample and throughput for every combination, bars grouped by cache mode."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows = result["rows"]
    # Bars per cache mode, and per step path when the bench compared them.
    both = len({r.get("step") for r in rows}) > 1
    variant = lambda r: f"{r['cache']}, {r['step']} step" if both else r["cache"]  # noqa: E731
    caches = list(dict.fromkeys(variant(r) for r in rows))
    gkey = lambda r: (r["sampler"], r["prompt_tokens"], r["batch_size"])  # noqa: E731
    groups = list(dict.fromkeys(gkey(r) for r in rows))
    plen = {gkey(r): r["prompt_positions_mean"] for r in rows}
    # Two panels stacked, at most 16 inches wide: side by side, 6 groups x 6 bars made a 42-inch figure.
    wide = len(groups) * len(caches) > 8
    fig = Figure(figsize=(min(16.0, max(7.0, 0.45 * len(groups) * len(caches) + 2)), 8.4 if wide else 4.4),
                 layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(2, 1) if wide else fig.subplots(1, 2)
    width = 0.8 / len(caches)
    panels = (("seconds_per_sample", "seconds per sample (lower is better)", "seconds per sample (wall-clock / samples)"),
              ("throughput_tok_s", "answer tokens / s (higher is better)", "answer tokens per second"))
    for ax, (key, title, ylabel) in zip(axes, panels):
        for j, cache in enumerate(caches):
            xs, vals, notes = [], [], []
            for i, g in enumerate(groups):
                r = next((r for r in rows if gkey(r) == g and variant(r) == cache), None)
                if r is None:
                    continue
                xs.append(i + (j - (len(caches) - 1) / 2) * width)
                vals.append(r[key])
                sp = f"{r['speedup_vs_none']:.1f}x\n" if r.get("speedup_vs_none") and r["cache"] != "none" else ""
                notes.append(f"{sp}{100 * r['accuracy']:.0f}%")
            bars = ax.bar(xs, vals, width, label=f"cache={cache}", color=f"C{j}")
            for b, note in zip(bars, notes):
                ax.annotate(note, (b.get_x() + b.get_width() / 2, b.get_height()), ha="center", va="bottom",
                            fontsize=7, xytext=(0, 1), textcoords="offset points")
        ax.set_xticks(range(len(groups)), [f"{g[0]}\nprompt {plen[g]:.0f} tok, batch {g[2]}" for g in groups], fontsize=7)
        ax.set_title(title, fontsize=9)
        ax.set_ylabel(ylabel, fontsize=8)
        ax.margins(y=0.2)
    axes[0].legend(fontsize=7)
    env = result["environment"]
    fig.suptitle(f"dpbench bench: {env['model']} on {env.get('gpu', env['device'])} "
                 "(bar labels: wall-clock speedup over cache=none at the same sampler and batch, then accuracy)", fontsize=9)
    from .. import __version__
    from .caption import add_caption

    cfg = result.get("config", {})
    hw = env.get("gpu") or f"CPU ({env.get('cpus')} cores, {env.get('threads')} torch thread{'s' if env.get('threads') != 1 else ''})"
    add_caption(fig, f"model {env['model']} | {hw}, {env.get('dtype')} | batch {', '.join(map(str, cfg.get('batch_sizes', [])))} | "
                     f"n={cfg.get('samples')} per bar, task {cfg.get('task')} | torch {env.get('torch')} | "
                     f"dpbench {__version__} | measured {env.get('time', '?')}")
    return fig
