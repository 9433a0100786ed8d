"""The Export tab: a run folder or an adapter under the root exported by ``mu.export`` as the LoRA adapter, a merged
model or GGUF files (any of the quants, each checked in llama.cpp when asked); the files written with their sizes,
each GGUF file's agreement with the merged model, its Modelfile and the model card shown, the files to download.
The output folder is under the root, and one that holds files is replaced only when asked."""

from __future__ import annotations

from pathlib import Path

import gradio as gr
import pandas as pd

import mcq_unsloth as mu

from ..cards import CARD
from ..convert.run import GGUF_DEFAULT, QUANTS
from ..errors import USER_ERRORS
from .evaluate_tab import slug
from .roots import Root

DOWNLOADABLE = 2 * 2**30  # bytes: larger files are named, not offered through the browser


def build(root: Root) -> None:
    with gr.Tab("Export", id="export"):
        with gr.Row():
            source = gr.Dropdown(choices=sources(root), value=None, label="A run folder or adapter under the root",
                                 elem_id="export-source", scale=3)
            refresh = gr.Button("Refresh the list", scale=1, elem_id="export-refresh")
        with gr.Row():
            fmt = gr.Radio(["gguf", "merged", "lora"], value="gguf", label="format", elem_id="export-format",
                           info="gguf: for llama.cpp and Ollama; merged: LoRA merged into 16-bit weights; lora: the "
                                "adapter as it is")
            quants = gr.CheckboxGroup(list(QUANTS), value=[GGUF_DEFAULT], label="quants (gguf)",
                                      elem_id="export-quants")
            verify = gr.Checkbox(True, label="verify in llama.cpp", elem_id="export-verify",
                                 info="each GGUF file's tokenization and letters against the merged model")
        with gr.Row():
            out = gr.Textbox(label="Output folder, under the root (default exports/SOURCE-FORMAT)",
                             elem_id="export-out", scale=3)
            overwrite = gr.Checkbox(False, label="Replace it if it holds files", scale=1)
        run = gr.Button("Export", variant="primary", elem_id="export-run")
        said = gr.Markdown(elem_id="export-status")
        written = gr.Dataframe(headers=["file", "MB", "agreement"], interactive=False, label="Written",
                               elem_id="export-files")
        with gr.Row():
            modelfile = gr.Code(label="Modelfile (Ollama)", interactive=False, elem_id="export-modelfile")
            card = gr.Markdown(label="Model card", elem_id="export-card")
        download = gr.File(label="Files to download", file_count="multiple", interactive=False,
                           elem_id="export-download")

        def do_export(name, fmt_value, quant_values, verify_value, out_value, replace,
                      progress=gr.Progress(track_tqdm=True)):
            if not name:
                return "**Error:** pick a run folder or adapter first", None, "", "", None
            folder = out_value.strip() or f"exports/{slug(name)}-{fmt_value}"
            gguf = fmt_value == "gguf"
            try:
                files = mu.export(root.resolve(name), root.resolve(folder), format=fmt_value,
                                  quant=(quant_values or None) if gguf else None, verify=bool(verify_value) and gguf,
                                  overwrite=bool(replace))
            except USER_ERRORS as error:
                return f"**Error:** {error}", None, "", "", None
            target = root.resolve(folder)
            agreement = {Path(e["file"]).name: e["verify"]["agreement"] for e in files.summary.get("gguf", [])
                         if "verify" in e}
            every = sorted(p for p in target.rglob("*") if p.is_file() and not p.name.startswith("."))
            rows = [(root.relative(p), round(p.stat().st_size / 2**20, 2), agreement.get(p.name)) for p in every]
            modelfiles = [p for p in every if p.name.endswith("Modelfile")]
            card_path = target / CARD
            checked = "".join(f"; {e['quant']} agrees with the merged model on {e['verify']['agreement']:.1%} of "
                              f"{e['verify']['questions']} questions" for e in files.summary.get("gguf", [])
                              if "verify" in e)
            return (f"exported `{name}` as {fmt_value} into `{folder}`{checked}",
                    pd.DataFrame(rows, columns=["file", "MB", "agreement"]),
                    modelfiles[0].read_text(encoding="utf-8") if modelfiles else "",
                    _without_metadata(card_path.read_text(encoding="utf-8")) if card_path.is_file() else "",
                    [str(p) for p in every if p.stat().st_size <= DOWNLOADABLE])

        run.click(do_export, [source, fmt, quants, verify, out, overwrite],
                  [said, written, modelfile, card, download])
        refresh.click(lambda: gr.update(choices=sources(root)), None, source)


def sources(root: Root) -> list[str]:
    """What can be exported: the run folders, then the adapter and model folders under the root."""
    return [*root.runs(), *[m for m in root.models() if not m.endswith(".gguf")]]


def _without_metadata(card: str) -> str:
    """A model card's text without its YAML header (the Hub reads that; a reader wants what follows).

    >>> _without_metadata("---\\ntags: [x]\\n---\\n# Title\\n")
    '# Title\\n'
    """
    if card.startswith("---\n") and (end := card.find("\n---\n", 4)) != -1:
        return card[end + 5:]
    return card
