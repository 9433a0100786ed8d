"""Model cards: the ``README.md`` beside an adapter that the Hugging Face Hub reads, with the run's real numbers.

The metadata (``base_model``, ``license``, ``language``) comes from the base model's own card where it can be
read (a local folder's README.md, or the Hub's one in the local cache), ``language`` from the recipe's
``data.language`` when it says it; what cannot be read is left out and the card says so, never guessed. The
body says how the adapter was made (recipe, resolved settings, the training data's size and answer letters,
never its questions), how well it answers (the last ``eval_accuracy`` and the command that measures it again),
and how to load it. ``eval --card`` adds an evaluation's results to it.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from .errors import OutputError
from .model.backends import adapter_base
from .outputs import write_text

CARD = "README.md"
TAGS = ["mcq-unsloth", "multiple-choice"]


def base_metadata(name: str, language: list[str] | None = None) -> tuple[dict, list[str]]:
    """The metadata a card can take from base model ``name`` (a folder or a Hub id), and notes on what is
    missing; ``language``, the recipe's ``data.language``, says the questions' languages instead of the base's.
    A base that is itself one of our adapters passes on its own base's metadata."""
    card = _read_card(name)
    known = {key: card[key] for key in ("base_model", "license", "language") if card.get(key)}
    if language:
        known["language"] = list(language)
    local = Path(name).exists()
    if not local:
        known["base_model"] = name
    elif "base_model" not in known:
        known.pop("base_model", None)
    notes = []
    if "base_model" not in known:
        notes.append(f"`base_model` is left out: the base is the local folder `{name}`, whose card names no Hub "
                     f"model; add the Hub id it came from before uploading")
    where = "the base folder has no card that says it" if local else "the base model's card is not in the local cache"
    for key in ("license", "language"):
        if key not in known:
            notes.append(f"`{key}` is left out: {where}; copy it from the base model's card before uploading"
                         + ("" if key == "license" else " (or say the questions' languages in the recipe's "
                                                        "`data.language`)"))
    return known, notes


def adapter_card(adapter: Path, config_text: str, summary: dict, recipe: str, task: str, base: str,
                 language: list[str] | None = None) -> str:
    """The card of a trained adapter: ``summary`` is what the run returns (steps, ``eval_accuracy``,
    ``eval_command``, ``data``...), ``config_text`` the resolved recipe, ``language`` its ``data.language``."""
    metadata, notes = base_metadata(base, language)
    metadata.update(library_name="peft", pipeline_tag="text-generation",
                    tags=TAGS + ["lora", task, summary.get("backend", "")])
    data = summary.get("data") or {}
    lines = [_front_matter(metadata), f"# {adapter.parent.name}: a LoRA adapter that answers multiple-choice questions",
             "", f"Trained with mcq-unsloth from the recipe `{recipe}`: {task.upper()}, backend "
             f"`{summary.get('backend')}`, {summary.get('steps')} steps"
             + (f" in {summary['processes']} processes" if summary.get("processes", 1) > 1 else "")
             + f", on top of `{base}`.", ""]
    if notes:
        lines += ["Before uploading:", *[f"- {note}" for note in notes], ""]
    lines += ["## Training data", "", _data_line("training", data.get("train")),
              _data_line("validation", data.get("validation")), "", "The questions themselves are not included.",
              "", "## Evaluation", ""]
    if summary.get("eval_accuracy") is not None:
        questions = (data.get("validation") or {}).get("rows")
        lines += [f"Letter accuracy on the {questions} validation questions at the end of training: "
                  f"**{summary['eval_accuracy']}** (`eval_accuracy`, as `mcq-unsloth eval` measures it). Measure it "
                  f"again:", "", "```bash", summary["eval_command"], "```", ""]
    else:
        lines += ["No validation questions were held out, so no accuracy was measured during training.", ""]
    lines += [_EVALUATIONS, "", "## Settings", "", "The resolved recipe:", "", "```yaml", config_text.rstrip(), "```",
              "", "## How to use", "", "```python", "from peft import AutoPeftModelForCausalLM",
              "from transformers import AutoTokenizer", "",
              f'model = AutoPeftModelForCausalLM.from_pretrained("{adapter}")',
              f'tokenizer = AutoTokenizer.from_pretrained("{adapter}")', "```", "",
              "With mcq-unsloth, letter scoring of a question file:", "", "```bash",
              f"mcq-unsloth predict --model {adapter} --data test.csv --out submission.csv", "```", "",
              "For llama.cpp and Ollama, export it first (a GGUF file and a Modelfile):", "", "```bash",
              f"mcq-unsloth export {adapter} --format gguf --quant q8_0 --verify --out gguf/",
              "llama-cli -m gguf/*.gguf    # or: ollama create NAME -f gguf/Modelfile", "```", "",
              "## Upload", "", "```bash", f"huggingface-cli upload YOUR_NAME/{adapter.parent.name} {adapter}", "```", ""]
    return "\n".join(lines)


def export_card(out: Path, fmt: str, source: Path, adapter: Path | None, result: dict) -> str:
    """The card of an export (``merged`` folder or ``gguf`` files in ``out``) of ``source``: the metadata and the
    training and evaluation sections of the adapter's card when it has one of ours, the export's own checks, and
    how to load it."""
    ours = adapter is not None and (adapter / CARD).is_file()  # the adapter's card, which training wrote
    from_card = _sections(adapter / CARD) if ours else {}
    metadata, notes = base_metadata(adapter_base(adapter) or str(source) if adapter is not None else str(source))
    if ours:
        metadata.update({k: v for k, v in _read_card(str(adapter)).items()
                         if k in ("base_model", "license", "language")})
    gguf = fmt == "gguf"
    metadata.update(library_name=None if gguf else "transformers", pipeline_tag="text-generation",
                    tags=TAGS + (["gguf", "llama.cpp"] if gguf else ["merged"]))
    what = "GGUF files for llama.cpp and Ollama" if gguf else "a merged 16-bit model (the LoRA adapter in its weights)"
    lines = [_front_matter(metadata), f"# {out.name}: {what}", "",
             f"Exported by mcq-unsloth (`mcq-unsloth export --format {fmt}`) from `{source}`.", ""]
    if notes := [note for note in notes if note.split("`")[1] not in metadata]:
        lines += ["Before uploading:", *[f"- {note}" for note in notes], ""]
    for title in ("Training data", "Evaluation"):
        if title in from_card:
            lines += [f"## {title} (of the adapter)", "", from_card[title].strip(), ""]
    lines += ["## Export checks", ""]
    if "merge" in result or "max_probability_difference" in result:
        merge = result.get("merge", result)
        lines += [f"- merge: letter probabilities of the merged model against the adapter on "
                  f"{merge['questions_compared']} questions differ by at most {merge['max_probability_difference']} "
                  f"({merge['dtype']})"]
    for entry in result.get("gguf", []):
        check = entry.get("verify")
        said = (f"llama.cpp answers like the merged model on {check['agreement']:.1%} of {check['questions']} "
                f"questions (beyond near-ties {check['agreement_beyond_near_ties']}), tokenization "
                f"{'identical' if check['tokenization_identical'] else 'DIFFERENT'}, probabilities within "
                f"{check['max_probability_difference']}" if check else "not verified (export with --verify)")
        lines.append(f"- `{Path(entry['file']).name}` ({entry['quant']}, {entry['bytes'] / 2**20:.1f} MiB): {said}")
    lines += ["", "## How to use", ""]
    if gguf:
        first = Path(result["gguf"][0]["file"]).name if result.get("gguf") else "MODEL.gguf"
        lines += ["```bash", f"llama-cli -m {shlex.quote(first)}",
                  f"mcq-unsloth predict --model {shlex.quote(first)} --data test.csv --out submission.csv"]
        if any("modelfile" in e for e in result.get("gguf", [])):
            lines.append(f"ollama create {out.name} -f {Path(result['gguf'][0]['modelfile']).name}")
        lines.append("```")
    else:
        lines += ["```python", "from transformers import AutoModelForCausalLM, AutoTokenizer", "",
                  f'model = AutoModelForCausalLM.from_pretrained("{out}")',
                  f'tokenizer = AutoTokenizer.from_pretrained("{out}")', "```"]
    lines += ["", "## Upload", "", "```bash", f"huggingface-cli upload YOUR_NAME/{out.name} {out}", "```", ""]
    return "\n".join(lines)


def _sections(path: Path) -> dict[str, str]:
    """A Markdown file's level-2 sections by title."""
    parts = re.split(r"^## (.+)$", path.read_text(encoding="utf-8"), flags=re.M)
    return {title.strip(): body for title, body in zip(parts[1::2], parts[2::2])}


def write_card(folder: Path, text: str) -> Path:
    write_text(Path(folder) / CARD, text)
    return Path(folder) / CARD


def add_evaluation(folder: Path, metrics: dict, data: str, command: str) -> Path:
    """Put an evaluation's results into the card of ``folder`` (an adapter or merged model), one section per
    data source, replaced when evaluated again. Raises :class:`~mcq_unsloth.errors.OutputError` when the folder
    has no card of ours."""
    text = (check_card(folder) / CARD).read_text(encoding="utf-8")
    start, end = f"<!-- evaluation: {data} -->", f"<!-- end of evaluation: {data} -->"
    shares = ", ".join(f"{x} {100 * share:.0f} %" for x, share in metrics["predicted"].items())
    section = "\n".join([
        start, f"### {data}", "",
        f"Accuracy **{metrics['accuracy']}** on {metrics['questions']} questions ({metrics['mode']} mode"
        + (", circular" if metrics.get("circular") else "") + f", precision {metrics.get('precision')}); "
        f"unparseable {metrics['unparseable']}; predicted letters {shares}"
        + (f"; circular accuracy {metrics['circular_accuracy']}" if "circular_accuracy" in metrics else "") + ".",
        "", "```bash", command, "```", end])
    pattern = re.compile(re.escape(start) + ".*?" + re.escape(end), re.S)
    text = pattern.sub(lambda _: section, text) if start in text else text.replace(
        _EVALUATIONS, _EVALUATIONS + "\n\n" + section)
    return write_card(folder, text)


_EVALUATIONS = "<!-- evaluations by `mcq-unsloth eval --card` follow -->"


def check_card(folder: Path) -> Path:
    """``folder`` when it holds a card of ours; raises :class:`~mcq_unsloth.errors.OutputError` otherwise."""
    path = Path(folder) / CARD
    if _EVALUATIONS not in (path.read_text(encoding="utf-8") if path.is_file() else ""):
        raise OutputError(f"{folder} has no model card of mcq-unsloth ({CARD} without its evaluations section); "
                          f"--card writes into the card an adapter's training wrote")
    return Path(folder)


def _read_card(name: str) -> dict:
    """The metadata of a model's card: a local folder's README.md, or a Hub model's one from the local cache."""
    from huggingface_hub import ModelCard

    path = Path(name) / CARD
    if not path.is_file() and not Path(name).exists():
        try:
            from huggingface_hub import try_to_load_from_cache

            cached = try_to_load_from_cache(name, CARD)
        except ValueError:  # not a valid Hub id
            cached = None
        path = Path(cached) if isinstance(cached, str) else path
    if not path.is_file():
        return {}
    return ModelCard.load(path).data.to_dict()


def _front_matter(metadata: dict) -> str:
    from huggingface_hub import ModelCardData

    return "---\n" + ModelCardData(**{k: v for k, v in metadata.items() if v}).to_yaml() + "\n---\n"


def _data_line(part: str, summary: dict | None) -> str:
    if not summary:
        return f"- {part}: none"
    answers = summary.get("answers") or {}
    shares = ", ".join(f"{x} {100 * n / max(summary['rows'], 1):.0f} %" for x, n in answers.items())
    return f"- {part}: {summary['rows']} questions" + (f"; answer letters {shares}" if shares else "")
