"""The Runs tab: every run folder under the root with what it is now (running, finished, failed with its error,
stopped with its last checkpoint), read from the folders themselves when the page loads and every few seconds, so
that a reload, a second tab or a restarted server shows the same runs; a run's summary and curves; runs compared
side by side (``mu.compare_runs``)."""

from __future__ import annotations

import gradio as gr
import pandas as pd

import mcq_unsloth as mu

from ..errors import USER_ERRORS
from ..records import finished_summary, progress_line, read_progress, run_status
from .roots import Root
from .timers import tab_timer, unchanged

REFRESH_S = 5
SUMMARY = ("steps", "train_loss", "eval_loss", "eval_accuracy", "seconds", "backend")


def build(root: Root, app: gr.Blocks, tabs: gr.Tabs) -> None:
    with gr.Tab("Runs", id="runs") as tab:
        table = gr.Dataframe(headers=["run", "status", "detail"], interactive=False, elem_id="runs-table",
                             label="Run folders under the root")
        with gr.Row():
            picked = gr.Dropdown(choices=root.runs(), value=None, label="A run", elem_id="runs-pick", scale=4)
            refresh = gr.Button("Refresh", scale=1)
        status = gr.Markdown(elem_id="runs-status")
        curves = gr.Plot(label="Curves", elem_id="runs-curves")
        with gr.Accordion("Compare runs side by side", open=False):
            compared = gr.Dropdown(choices=root.runs(), multiselect=True, label="Two runs or more",
                                   elem_id="runs-compare-pick")
            compare = gr.Button("Compare", elem_id="runs-compare")
            compare_status = gr.Markdown(elem_id="runs-compare-status")
            overlaid = gr.Plot(label="Curves overlaid", elem_id="runs-compare-curves")
            differing = gr.Dataframe(label="The settings that differ", interactive=False,
                                     elem_id="runs-compare-settings")
            finals = gr.Dataframe(label="Final figures", interactive=False, elem_id="runs-compare-metrics")
        timer = tab_timer(tabs, "Runs", REFRESH_S)
        shown = gr.State(None)  # what the page shows: the listing, the run's line and what its curves were drawn from

        def listing():
            runs = root.runs()
            rows = [[run, *_status(root.resolve(run))] for run in runs]
            return rows, pd.DataFrame(rows, columns=["run", "status", "detail"]), gr.update(choices=runs), \
                gr.update(choices=runs)

        def show(run: str | None, drawn_from=""):
            """The run's line, its curves (no update when ``drawn_from``, the history's signature, is unchanged),
            and the signature."""
            if not run:
                return "", unchanged(None, drawn_from), None
            folder = root.resolve(run)
            state, detail = run_status(folder)
            line = f"`{run}`: **{state}** ({detail})"
            if state == "finished":
                summary = finished_summary(folder)
                line += "  \n" + ", ".join(f"{key} {_figure(summary[key])}" for key in SUMMARY
                                            if summary.get(key) is not None)
            history = folder / "history.jsonl"
            signature = (run, history.stat().st_mtime_ns, history.stat().st_size) if history.is_file() else None
            if signature == drawn_from:
                return line, gr.update(), signature
            try:
                figure = mu.plot_run(folder)
            except USER_ERRORS:
                figure = None  # nothing logged yet
            return line, figure, signature

        def side_by_side(runs):
            try:
                comparison = mu.compare_runs([root.resolve(run) for run in runs or []])
            except USER_ERRORS as error:
                return f"**Error:** {error}", None, None, None
            said = f"{len(runs)} runs" + ("" if len(comparison.settings) else ": the same settings")
            return said, comparison.figure, comparison.settings, comparison.metrics

        compare.click(side_by_side, compared, [compare_status, overlaid, differing, finals])

        def everything(run, before=None):
            rows, frame, runs, runs_too = listing()
            shown_rows, shown_line, drawn_from = before or (None, None, "")
            line, figure, signature = show(run, drawn_from)
            if rows == shown_rows:
                frame, runs, runs_too = gr.update(), gr.update(), gr.update()
            return frame, runs, runs_too, unchanged(line, shown_line), figure, (rows, line, signature)

        outputs = [table, picked, compared, status, curves, shown]
        picked.change(lambda run: everything(run), picked, outputs)
        refresh.click(lambda run: everything(run), picked, outputs)
        timer.tick(everything, [picked, shown], outputs, show_progress="hidden", queue=False)
        tab.select(lambda run: everything(run), picked, outputs)
        app.load(lambda run: everything(run), picked, outputs)


def _status(folder) -> tuple[str, str]:
    """A run's state, and for a running one where it is."""
    state, detail = run_status(folder)
    return state, f"{detail}: {progress_line(read_progress(folder))}" if state == "running" else detail


def _figure(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
