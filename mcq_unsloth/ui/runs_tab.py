"""The Runs tab: every run folder under the root with what it is now (running, finished, failed with its error,
stopped with its last checkpoint), read from the folders themselves when the page loads and every few seconds, so
that a reload, a second tab or a restarted server shows the same runs; a run's summary and curves."""

from __future__ import annotations

import gradio as gr
import pandas as pd

import mcq_unsloth as mu

from ..errors import USER_ERRORS
from ..records import finished_summary, run_status
from .roots import Root

REFRESH_S = 5
SUMMARY = ("steps", "train_loss", "eval_loss", "eval_accuracy", "seconds", "backend")


def build(root: Root, app: gr.Blocks) -> None:
    with gr.Tab("Runs", id="runs"):
        table = gr.Dataframe(headers=["run", "status", "detail"], interactive=False, elem_id="runs-table",
                             label="Run folders under the root")
        with gr.Row():
            picked = gr.Dropdown(choices=root.runs(), value=None, label="A run", elem_id="runs-pick", scale=4)
            refresh = gr.Button("Refresh", scale=1)
        status = gr.Markdown(elem_id="runs-status")
        curves = gr.Plot(label="Curves", elem_id="runs-curves")
        timer = gr.Timer(REFRESH_S)

        def listing():
            runs = root.runs()
            rows = [[run, *run_status(root.resolve(run))] for run in runs]
            return pd.DataFrame(rows, columns=["run", "status", "detail"]), gr.update(choices=runs)

        def show(run: str | None):
            if not run:
                return "", None
            folder = root.resolve(run)
            state, detail = run_status(folder)
            line = f"`{run}`: **{state}** ({detail})"
            if state == "finished":
                summary = finished_summary(folder)
                line += "  \n" + ", ".join(f"{key} {_figure(summary[key])}" for key in SUMMARY
                                            if summary.get(key) is not None)
            try:
                figure = mu.plot_run(folder)
            except USER_ERRORS:
                figure = None  # nothing logged yet
            return line, figure

        def everything(run):
            return (*listing(), *show(run))

        outputs = [table, picked, status, curves]
        picked.change(show, picked, [status, curves])
        refresh.click(everything, picked, outputs)
        timer.tick(everything, picked, outputs)
        app.load(everything, picked, outputs)


def _figure(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
