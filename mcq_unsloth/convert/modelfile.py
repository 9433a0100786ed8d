"""An Ollama Modelfile beside a GGUF file, so that ``ollama create NAME -f FILE`` answers as our predictions do:
the chat template in Ollama's template language, the stop tokens, the recipe's system prompt and greedy
decoding.

Ollama's templates are Go templates, not Jinja, so a chat template is written only for a format we can state
exactly and have checked against the tokenizer's own rendering: ChatML (Qwen2.5, SmolLM2, the tiny models).
"""

from __future__ import annotations

from pathlib import Path

from ..errors import ExportError
from ..outputs import write_text
from ..prompts import end_of_turn

CHATML_GO = """{{- if .System }}<|im_start|>system
{{ .System }}<|im_end|>
{{ end }}{{- range .Messages }}<|im_start|>{{ .Role }}
{{ .Content }}<|im_end|>
{{ end }}<|im_start|>assistant
"""


def modelfile_text(gguf_name: str, tokenizer, system: str | None, max_new_tokens: int = 8) -> str:
    """The Modelfile for the GGUF file ``gguf_name`` (beside it) of a model with ``tokenizer``."""
    if not _is_chatml(tokenizer):
        raise ExportError("the chat template is not ChatML, and only ChatML is written as an Ollama template here; "
                          "the GGUF file itself carries the model's chat template")
    stops = list(dict.fromkeys(x for x in (end_of_turn(tokenizer), "<|im_start|>") if x))
    lines = [f"FROM ./{gguf_name}", f'TEMPLATE """{CHATML_GO}"""']
    if system:
        lines.append(f'SYSTEM """{system}"""')
    lines += [f'PARAMETER stop "{stop}"' for stop in stops]
    lines += ["PARAMETER temperature 0", "PARAMETER top_k 1", f"PARAMETER num_predict {max_new_tokens}"]
    return "\n".join(lines) + "\n"


def write_modelfile(gguf_path: Path, tokenizer, system: str | None) -> Path:
    """Write ``NAME.Modelfile`` beside ``gguf_path`` (``NAME.gguf``); returns its path."""
    path = gguf_path.with_suffix(".Modelfile")
    write_text(path, modelfile_text(gguf_path.name, tokenizer, system))
    return path


def _is_chatml(tokenizer) -> bool:
    """Whether the tokenizer's chat template renders a system, user and assistant turn exactly as ChatML."""
    messages = [{"role": "system", "content": "S"}, {"role": "user", "content": "U"},
                {"role": "assistant", "content": "A"}, {"role": "user", "content": "V"}]
    chatml = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages)
    try:
        rendered = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    except (ValueError, TypeError):
        return False
    return rendered == chatml + "<|im_start|>assistant\n"
