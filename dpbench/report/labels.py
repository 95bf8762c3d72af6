"""Point labels that do not collide: each label takes the first nearby spot whose box overlaps no other.

Threshold grids put points close together (0.1 and 0.2 often sit on top of each
other), and labels drawn at one fixed offset run into each other ("0.10.2").
`place_labels` measures every label with the figure's renderer and tries a ring of
offsets around its point, keeping the first free one (falling back to the least crowded).
"""

from __future__ import annotations

# Offsets in points around the marker: right, above, below, left, then further out.
OFFSETS = [(5, 4), (5, -11), (-5, 4), (-5, -11), (0, 9), (0, -16), (12, 12), (12, -20), (-12, 12), (-12, -20),
           (20, 0), (-20, 0), (0, 20), (0, -26)]


def place_labels(ax, items: list[tuple[float, float, str, str]], fontsize: float = 7) -> list:
    """``items``: (x, y, text, colour) in data coordinates. Returns the matplotlib text objects."""
    fig = ax.figure
    renderer = fig.canvas.get_renderer()
    placed_boxes = []
    # Markers are obstacles too: a label must not cover another point.
    marker_boxes = []
    for x, y, _, _ in items:
        px, py = ax.transData.transform((x, y))
        marker_boxes.append((px - 4, py - 4, px + 4, py + 4))
    texts = []
    for x, y, text, color in items:
        best, best_score = None, None
        for dx, dy in OFFSETS:
            ha = "left" if dx > 0 else "right" if dx < 0 else "center"
            va = "bottom" if dy > 0 else "top" if dy < 0 else "center"
            t = ax.annotate(text, (x, y), xytext=(dx, dy), textcoords="offset points", fontsize=fontsize,
                            color=color, ha=ha, va=va)
            bb = t.get_window_extent(renderer)
            box = (bb.x0 - 1, bb.y0 - 1, bb.x1 + 1, bb.y1 + 1)
            score = sum(_overlap(box, other) for other in placed_boxes + marker_boxes)
            inside = ax.bbox.x0 <= box[0] and box[2] <= ax.bbox.x1 and ax.bbox.y0 <= box[1] and box[3] <= ax.bbox.y1
            score += 0 if inside else 1e6
            if best_score is None or score < best_score:
                if best is not None:
                    best.remove()
                best, best_score, best_box = t, score, box
            else:
                t.remove()
            if score == 0:
                break
        placed_boxes.append(best_box)
        texts.append(best)
    return texts


def _overlap(a, b) -> float:
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    return w * h if w > 0 and h > 0 else 0.0


__all__ = ["place_labels"]
