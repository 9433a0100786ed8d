"""The Evaluate tab: a model under the root (a run's adapter or checkpoint, a merged folder, a ``.gguf`` file) or a
base model by name, a question file, and the answering options; ``mu.evaluate`` for the metrics, the confusion
matrix and the letters predicted, ``mu.predict`` for the submission file to download (the file ``mcq-unsloth
predict`` writes), ``mu.ensemble`` for several predictions combined. Every output goes under the root, and an
earlier one is continued (the same settings) or replaced only when asked."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import gradio as gr
import pandas as pd

import mcq_unsloth as mu

from ..errors import USER_ERRORS
from ..plots import letters_figure
from .roots import Root

MODES = ("score", "generate")


def build(root: Root) -> None:
    with gr.Tab("Evaluate", id="evaluate"):
        with gr.Row():
            model = gr.Dropdown(choices=root.models(), value=None, allow_custom_value=True, scale=3,
                                label="Model: an adapter, checkpoint, merged folder or .gguf file under the root, "
                                      "or a base model's name", elem_id="eval-model")
            data = gr.Dropdown(choices=["shipped:mcq_zh.csv", *root.files()], value="shipped:mcq_zh.csv", scale=3,
                               label="Questions", elem_id="eval-data")
            refresh = gr.Button("Refresh the lists", scale=1, elem_id="eval-refresh")
        with gr.Row():
            mode = gr.Radio(list(MODES), value="score", label="mode", elem_id="eval-mode",
                            info="score: the letters' probabilities in one forward pass; generate: a reply, its "
                                 "letter read")
            circular = gr.Checkbox(False, label="circular", info="every rotation of the options, combined")
            debias = gr.Number(0, precision=0, minimum=0, label="debias",
                               info="N questions to estimate the letter prior on (0: off)")
            top_k = gr.Number(0, precision=0, minimum=0, label="top_k", info="rank K letters (0: one letter)")
            replace = gr.Checkbox(False, label="Replace earlier results",
                                  info="otherwise the same settings continue the earlier output")
        with gr.Row():
            evaluate = gr.Button("Evaluate (labelled questions)", variant="primary", elem_id="eval-run")
            predict = gr.Button("Predict (the submission file)", elem_id="eval-predict")
        said = gr.Markdown(elem_id="eval-status")
        metrics = gr.Dataframe(headers=["metric", "value"], interactive=False, label="Metrics", elem_id="eval-metrics")
        with gr.Row():
            confusion = gr.Image(label="Confusion (gold by predicted)", type="filepath", elem_id="eval-confusion")
            letters = gr.Plot(label="Letters predicted", elem_id="eval-letters")
        download = gr.File(label="Files to download", file_count="multiple", interactive=False, elem_id="eval-files")
        with gr.Accordion("Ensemble: several prediction files combined", open=False):
            members = gr.Dropdown(choices=root.files((".csv",)), multiselect=True, label="Prediction files",
                                  elem_id="ens-files")
            weights = gr.Textbox(label="Weights, one a file (empty: equal)", placeholder="1, 1", elem_id="ens-weights")
            combine = gr.Button("Combine", elem_id="ens-run")
            combined = gr.Markdown(elem_id="ens-status")
            combined_file = gr.File(label="The combined file", interactive=False, elem_id="ens-file")

        def options(mode_value, circular_value, debias_value, top_k_value):
            return {"mode": mode_value, "circular": bool(circular_value), "debias": int(debias_value or 0) or None,
                    "top_k": int(top_k_value or 0) or None}

        def run_evaluate(model_name, data_name, mode_value, circular_value, debias_value, top_k_value, replace_value,
                         progress=gr.Progress(track_tqdm=True)):
            if not model_name:
                return "**Error:** pick a model first", None, None, None, None
            out_dir = root.resolve(f"evals/{slug(model_name)}__{slug(data_name)}")
            try:
                report = mu.evaluate(model_path(root, model_name), _data(root, data_name), out_dir=out_dir,
                                     resume=out_dir.exists() and not replace_value, overwrite=bool(replace_value),
                                     **options(mode_value, circular_value, debias_value, top_k_value))
            except USER_ERRORS as error:
                return f"**Error:** {error}", None, None, None, None
            frame = report["predictions"]
            line = f"accuracy **{report['accuracy']:.3f}** on {report['questions']} questions; written to " \
                   f"`{root.relative(out_dir)}`"
            files = [str(p) for p in (out_dir / "predictions.csv", out_dir / "metrics.json") if p.is_file()]
            return (line, metrics_table(report), str(out_dir / "confusion.png"), _letters(frame), files)

        def run_predict(model_name, data_name, mode_value, circular_value, debias_value, top_k_value, replace_value,
                        progress=gr.Progress(track_tqdm=True)):
            if not model_name:
                return "**Error:** pick a model first", None, None, None, None
            out = root.resolve(f"predictions/{slug(model_name)}__{slug(data_name)}.csv")
            try:
                frame = mu.predict(model_path(root, model_name), _data(root, data_name), out=out,
                                   resume=out.exists() and not replace_value, overwrite=bool(replace_value),
                                   **options(mode_value, circular_value, debias_value, top_k_value))
            except USER_ERRORS as error:
                return f"**Error:** {error}", None, None, None, None
            return (f"{len(frame)} questions answered; written to `{root.relative(out)}`", None, None,
                    _letters(frame), [str(out)])

        def run_ensemble(files, weight_text):
            if not files or len(files) < 2:
                return "**Error:** pick two prediction files or more", None
            out = root.resolve("predictions/ensemble.csv")
            try:
                weight_list = [float(w) for w in re.split(r"[,\s]+", weight_text.strip())] if weight_text.strip() \
                    else None
                mu.ensemble([root.resolve(f) for f in files], weight_list, out=out, overwrite=True)
            except ValueError as error:
                return f"**Error:** weights: {error}", None
            except USER_ERRORS as error:
                return f"**Error:** {error}", None
            return f"{len(files)} files combined into `{root.relative(out)}`", str(out)

        inputs = [model, data, mode, circular, debias, top_k, replace]
        outputs = [said, metrics, confusion, letters, download]
        evaluate.click(run_evaluate, inputs, outputs)
        predict.click(run_predict, inputs, outputs)
        combine.click(run_ensemble, [members, weights], [combined, combined_file])
        refresh.click(lambda: (gr.update(choices=root.models()), gr.update(choices=["shipped:mcq_zh.csv",
                                                                                      *root.files()]),
                               gr.update(choices=root.files((".csv",)))), None, [model, data, members])


def slug(name: str) -> str:
    """A file name for a model or data name.

    >>> slug("runs/smoke/adapter"), slug("shipped:mcq_zh.csv")
    ('runs-smoke-adapter', 'shipped-mcq_zh')
    """
    stem = name.removesuffix(Path(name).suffix) if Path(name).suffix in (".csv", ".tsv", ".jsonl", ".parquet",
                                                                          ".gguf") else name
    return re.sub(r"[^\w.]+", "-", stem).strip("-") or "model"


def metrics_table(report: dict) -> pd.DataFrame:
    """The figures of an evaluation, one a row (the distributions and the confusion are drawn instead)."""
    rows = [(key, f"{value:.4g}" if isinstance(value, float) else str(value)) for key, value in report.items()
            if not isinstance(value, (dict, list, pd.DataFrame)) and value is not None]
    return pd.DataFrame(rows, columns=["metric", "value"])


def model_path(root: Root, name: str) -> str:
    """A name under the root as its path; another (a Hub id, or a model in the cache) as given. A path leading out
    of the root is refused (:class:`~mcq_unsloth.errors.OutsideRoot`), never read."""
    path = root.resolve(name)
    return str(path) if path.exists() else name


def _data(root: Root, name: str) -> str:
    return name if name.startswith(("shipped:", "synth:", "synth-held-out:")) else str(root.resolve(name))


def _letters(frame: pd.DataFrame):
    counts = Counter(x if isinstance(x, str) and x else "none" for x in frame["answer"])  # the predicted letters
    return letters_figure(dict(sorted(counts.items())), title="letters predicted")
