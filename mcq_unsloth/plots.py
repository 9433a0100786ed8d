"""Pictures of a run, so nobody needs a cloud tracker: curves from the trainer's log history.

Every picture is drawn on its own :class:`matplotlib.figure.Figure`, never through pyplot's global state, so
the library never changes a notebook's plotting backend: a notebook shows the returned figure inline, and the
run folder gets the same figure as PNG."""

from __future__ import annotations

from pathlib import Path

from .outputs import replacing


SFT_PANELS = [("loss", ["loss", "eval_loss"]), ("MCQ accuracy (validation)", ["eval_accuracy"]),
              ("learning rate", ["learning_rate"])]


def grpo_panels(rewards: list[str]) -> list[tuple[str, list[str]]]:
    """The panels of a GRPO run's curves, for the rewards it computes."""
    return [("rewards (mean)", [f"rewards/{name}/mean" for name in rewards] + ["reward"]),
            ("MCQ accuracy (validation)", ["eval_accuracy"]), ("groups without reward spread", ["frac_reward_zero_std"]),
            ("KL", ["kl"]), ("loss", ["loss"]), ("completion length", ["completions/mean_length"])]


def curves_figure(history: list[dict], panels: list[tuple[str, list[str]]], title: str):
    """Logged values against step, one panel per ``(label, [keys])``; panels with no data are left out. Returns
    the :class:`~matplotlib.figure.Figure`, or None when nothing was logged."""
    from matplotlib.figure import Figure

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
    figure = Figure(figsize=(4.4 * columns, 3.3 * rows))
    axes = figure.subplots(rows, columns, squeeze=False)
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
    return figure


def letters_figure(counts: dict[str, int], title: str = "answer letters"):
    """A bar per letter with its count and share, as a :class:`~matplotlib.figure.Figure` (a skewed distribution is
    what a position-biased model learns from)."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(3.6, 2.8))
    axis = figure.subplots()
    total = sum(counts.values()) or 1
    bars = axis.bar(list(counts), list(counts.values()), color="#4c72b0")
    axis.bar_label(bars, labels=[f"{n} ({n / total:.0%})" for n in counts.values()], fontsize=8)
    axis.set_title(title)
    axis.set_ylabel("questions")
    axis.margins(y=0.15)
    figure.tight_layout()
    return figure


def plot_curves(history: list[dict], path: Path, panels: list[tuple[str, list[str]]], title: str) -> Path | None:
    """:func:`curves_figure` written to ``path`` as PNG; returns the file, or None when nothing was logged."""
    figure = curves_figure(history, panels, title)
    return None if figure is None else _save(figure, path)


def plot_confusion(confusion: dict[str, dict[str, int]], path: Path, title: str) -> Path:
    """A gold-by-predicted heatmap with counts; predictions with no letter form the column ``none``."""
    from matplotlib.figure import Figure

    gold = sorted(confusion)
    predicted = sorted({p for row in confusion.values() for p in row} | set(gold), key=lambda x: (x == "none", x))
    counts = [[confusion[g].get(p, 0) for p in predicted] for g in gold]
    figure = Figure(figsize=(1.1 * len(predicted) + 1.6, 1.0 * len(gold) + 1.4))
    axis = figure.subplots()
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
    return _save(figure, path)


def plot_bench(rows: list[dict], path: Path, title: str) -> Path:
    """Bars per task: speed (samples/s) on top, peak memory below, one bar per backend and variant."""
    from matplotlib.figure import Figure

    rows = [row for row in rows if "error" not in row]
    tasks = list(dict.fromkeys(row["task"] for row in rows))
    figure = Figure(figsize=(3.4 * max(len(tasks), 1), 5.4))
    axes = figure.subplots(2, max(len(tasks), 1), squeeze=False)
    colors = {"unsloth": "tab:green", "hf": "tab:blue"}
    for column, task in enumerate(tasks):
        mine = [row for row in rows if row["task"] == task]
        labels = [row["backend"] + ("\none at a time" if row.get("variant", "").startswith("one") else "")
                  for row in mine]
        for line, (key, unit) in enumerate([("samples_per_s", "samples/s"), ("peak_mem_mb", "peak memory (MB)")]):
            axis = axes[line][column]
            bars = axis.bar(range(len(mine)), [row[key] for row in mine],
                            color=[colors[row["backend"]] for row in mine])
            axis.bar_label(bars, fmt="%.4g", fontsize=7)  # the one-at-a-time bars are too short to read
            axis.set_xticks(range(len(mine)), labels, fontsize=7)
            axis.set_ylabel(unit, fontsize=8)
            if line == 0:
                axis.set_title(task)
    figure.suptitle(title)
    return _save(figure, path)


def _save(figure, path: Path) -> Path:
    """Lay the figure out and write it as PNG, replacing ``path`` whole."""
    figure.tight_layout()
    with replacing(path, "wb") as out:
        figure.savefig(out, format="png", dpi=110)
    return path
