"""The Ask tab: one question and its options, typed or picked from a file, put to a model (``mu.load`` once, kept
while the same model is asked again; ``mu.predict`` on the one question): the letters' probabilities as bars in
score mode, the reply and the letter read from it in generate mode."""

from __future__ import annotations

import threading

import gradio as gr
import pandas as pd

import mcq_unsloth as mu

from ..errors import USER_ERRORS
from .evaluate_tab import MODES, model_path
from .roots import Root

LETTERS = "ABCD"
_loaded: dict[str, object] = {}  # the last model asked, by name: asking again does not load it again
_loading = threading.Lock()


def build(root: Root) -> None:
    with gr.Tab("Ask", id="ask"):
        with gr.Row():
            model = gr.Dropdown(choices=root.models(), value=None, allow_custom_value=True, scale=3,
                                label="Model under the root, or a base model's name", elem_id="ask-model")
            mode = gr.Radio(list(MODES), value="score", label="mode", elem_id="ask-mode", scale=1)
            refresh = gr.Button("Refresh the lists", scale=1, elem_id="ask-refresh")
        with gr.Accordion("Or pick a question from a file", open=False):
            with gr.Row():
                source = gr.Dropdown(choices=root.files(), value=None, label="Question file", elem_id="ask-file")
                row = gr.Number(1, precision=0, minimum=1, label="row (1 is the first question)", elem_id="ask-row")
                take = gr.Button("Take it", elem_id="ask-take")
        question = gr.Textbox(label="Question", lines=3, elem_id="ask-question")
        with gr.Row():
            options = [gr.Textbox(label=letter, elem_id=f"ask-option-{letter}") for letter in LETTERS]
        ask = gr.Button("Ask", variant="primary", elem_id="ask-run")
        said = gr.Markdown(elem_id="ask-status")
        bars = gr.BarPlot(x="letter", y="probability", label="The letters' probabilities", elem_id="ask-bars",
                          y_lim=[0, 1])
        reply = gr.Textbox(label="The reply (generate mode)", interactive=False, elem_id="ask-reply")

        def do_take(name, number):
            try:
                questions = mu.load_questions(root.resolve(name)) if name else []
            except USER_ERRORS as error:
                return f"**Error:** {error}", *[gr.update()] * (1 + len(options))
            if not 1 <= int(number or 0) <= len(questions):
                return f"**Error:** row {number}: the file has {len(questions)} questions", \
                    *[gr.update()] * (1 + len(options))
            picked = questions[int(number) - 1]
            return (f"question `{picked.id}`" + (f", answer {picked.answer}" if picked.answer else ""),
                    picked.question, *[picked.options.get(letter, "") for letter in LETTERS])

        def do_ask(name, mode_value, text, *option_texts, progress=gr.Progress(track_tqdm=True)):
            given = {letter: t.strip() for letter, t in zip(LETTERS, option_texts) if t and t.strip()}
            if not name or not text.strip() or len(given) < 2:
                return "**Error:** pick a model, and write a question with two options or more", None, ""
            frame = pd.DataFrame([{"id": "asked", "question": text.strip(), **given}])
            try:
                loaded = _model_for(root, name)
                answers = mu.predict(loaded, frame, mode=mode_value, progress=False)
            except USER_ERRORS as error:
                return f"**Error:** {error}", None, ""
            answer = answers["answer"][0]
            line = f"answer: **{answer}**" if isinstance(answer, str) else "no letter could be read from the reply"
            if mode_value == "score":
                probabilities = pd.DataFrame({"letter": list(given), "probability":
                                              [float(answers[f"prob_{letter}"][0]) for letter in given]})
                return line, probabilities, ""
            return line, None, str(answers["raw"][0])

        take.click(do_take, [source, row], [said, question, *options])
        ask.click(do_ask, [model, mode, question, *options], [said, bars, reply])
        refresh.click(lambda: (gr.update(choices=root.models()), gr.update(choices=root.files())), None,
                      [model, source])


def _model_for(root: Root, name: str):
    """The model ``name`` loaded, once while it is the one asked."""
    with _loading:
        if name not in _loaded:
            _loaded.clear()  # one model in memory at a time
            _loaded[name] = mu.load(model_path(root, name))
        return _loaded[name]
