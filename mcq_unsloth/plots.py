"""Pictures of a run, so nobody needs a cloud tracker: curves from the trainer's log history."""

from __future__ import annotations

from pathlib import Path


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
    figure, axes = plt.subplots(1, len(series), figsize=(4.2 * len(series), 3.4), squeeze=False)
    for axis, (label, lines) in zip(axes[0], series):
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
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
