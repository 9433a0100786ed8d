"""The Data tab: a question file picked under the root, uploaded, or made synthetic; what ``data check`` says of
it, a preview, and the answer letters' distribution as a chart. A bad file is the loader's one line, naming the
row and the column, in the page."""

from __future__ import annotations

import gradio as gr

import mcq_unsloth as mu

from ..data.questions import summarize, summary_line
from ..errors import USER_ERRORS
from ..plots import letters_figure
from .roots import QUESTION_SUFFIXES, Root

PREVIEW_ROWS = 20


def build(root: Root) -> None:
    with gr.Tab("Data", id="data"):
        with gr.Row():
            picked = gr.Dropdown(choices=root.files(), value=None, label="A question file under the root",
                                 elem_id="data-file", scale=4)
            refresh = gr.Button("Refresh the list", scale=1)
        uploaded = gr.File(label="Or upload one (CSV, TSV, JSON lines, Parquet)", file_types=list(QUESTION_SUFFIXES),
                           type="filepath", elem_id="data-upload")
        with gr.Accordion("Or make synthetic questions", open=False):
            with gr.Row():
                count = gr.Number(value=400, precision=0, minimum=1, label="questions")
                seed = gr.Number(value=0, precision=0, label="seed")
                held_out = gr.Checkbox(value=False, label="held-out phrasings")
                make = gr.Button("Write them under uploads/")
        status = gr.Markdown(elem_id="data-status")
        with gr.Row():
            preview = gr.Dataframe(label=f"The first {PREVIEW_ROWS} questions", interactive=False, scale=3)
            letters = gr.Plot(label="Answer letters", scale=1, elem_id="data-letters")

        def show(relative: str | None):
            if not relative:
                return "", None, None
            try:
                questions = mu.load_questions(root.resolve(relative))
            except USER_ERRORS as error:
                return f"**Error:** {error}", None, None
            summary = summarize(questions)
            line = f"`{relative}`: {summary_line(questions)}"
            chart = letters_figure(summary["answers"]) if summary["labelled"] else None
            return line, mu.questions_frame(questions[:PREVIEW_ROWS]), chart

        def upload(path: str | None):  # the upload box emptied again, ready for the next file
            if not path:
                return gr.update(), "", None
            try:
                relative = root.save_upload(path, path)
            except USER_ERRORS as error:
                return gr.update(), f"**Error:** {error}", None
            return gr.update(choices=root.files(), value=relative), "", None  # picked.change shows it

        def synthesize(n, seed_value, held):
            relative = f"uploads/synth-{int(n)}-seed{int(seed_value)}{'-held-out' if held else ''}.csv"
            try:
                if not root.resolve(relative).exists():  # the same settings write the same questions
                    mu.synth(int(n), seed=int(seed_value), held_out=bool(held), out=root.resolve(relative))
            except USER_ERRORS as error:
                return gr.update(), f"**Error:** {error}"
            return gr.update(choices=root.files(), value=relative), ""

        picked.change(show, picked, [status, preview, letters])
        refresh.click(lambda: gr.update(choices=root.files()), None, picked)
        uploaded.upload(upload, uploaded, [picked, status, uploaded])
        make.click(synthesize, [count, seed, held_out], [picked, status])
