"""Pictures of a run, so nobody needs a cloud tracker: curves from the trainer's log history."""

from __future__ import annotations

from pathlib import Path

from .outputs import replacing


def plot_curves(history: list[dict], path: Path, panels: list[tuple[str, list[str]]], title: str) -> Path | None:
    """Plot logged values against step, one panel per ``(label, [keys])``; panels with no data are left out.
    Returns the file written, or None when nothing was logged."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = []
    for label, keys in panels:
        lines = {key: [(row["step"], row[key]) for row in history if key in row and "step" in row] for key in keys}
        lines = {key: points for key, points in lines.items() if points}
        if lines:
            series.append((label, lines))
    if not series:
        return None
    columns = min(3, len(series))
    rows = -(-len(series) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(4.4 * columns, 3.3 * rows), squeeze=False)
    for axis in axes.flat[len(series):]:
        axis.set_visible(False)
    for axis, (label, lines) in zip(axes.flat, series):
        for key, points in lines.items():
            steps, values = zip(*points)
            axis.plot(steps, values, marker="o" if len(points) < 30 else None, markersize=3, label=key)
        axis.set_title(label)
        axis.set_xlabel("step")
        axis.grid(alpha=0.3)
        if len(lines) > 1:
            axis.legend(fontsize=8)
    figure.suptitle(title)
    figure.tight_layout()
    with replacing(path, "wb") as out:
        figure.savefig(out, format="png", dpi=110)
    plt.close(figure)
    return path


def plot_confusion(confusion: dict[str, dict[str, int]], path: Path, title: str) -> Path:
    """A gold-by-predicted heatmap with counts; predictions with no letter form the column ``none``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    gold = sorted(confusion)
    predicted = sorted({p for row in confusion.values() for p in row} | set(gold), key=lambda x: (x == "none", x))
    counts = [[confusion[g].get(p, 0) for p in predicted] for g in gold]
    figure, axis = plt.subplots(figsize=(1.1 * len(predicted) + 1.6, 1.0 * len(gold) + 1.4))
    image = axis.imshow(counts, cmap="Blues")
    axis.set_xticks(range(len(predicted)), predicted)
    axis.set_yticks(range(len(gold)), gold)
    axis.set_xlabel("predicted")
    axis.set_ylabel("gold")
    peak = max((c for row in counts for c in row), default=0)
    for i, row in enumerate(counts):
        for j, count in enumerate(row):
            axis.text(j, i, count, ha="center", va="center", color="white" if count > peak / 2 else "black")
    figure.colorbar(image, ax=axis, fraction=0.046)
    axis.set_title(title, fontsize=9)
    figure.tight_layout()
    with replacing(path, "wb") as out:
        figure.savefig(out, format="png", dpi=110)
    plt.close(figure)
    return path
