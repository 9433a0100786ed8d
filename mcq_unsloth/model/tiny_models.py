"""Random models built with no download: tiny ones for tests and smoke runs, and real-sized ones for
speed and memory benchmarks.

A tiny model is a normal Hugging Face folder: a few-layer Qwen2 or Llama with hidden size 64 and a byte-level
BPE tokenizer trained on our own Chinese and English text (so every character can be written, and frequent
ones are single tokens) that splits text before BPE as Qwen2's does (so llama.cpp tokenizes a GGUF export of
it identically), with a ChatML chat template like Qwen's. A shaped model has the layers of a real model
(:data:`SHAPES`) with random weights and the same small tokenizer: its speed and memory are the real model's
(with ``real_vocabulary``, its output layer's too), its answers are noise.
"""

from __future__ import annotations

from pathlib import Path

from ..data.questions import Question, read_questions
from ..data.synthetic import synth_questions
from ..outputs import whole_folder
from ..prompts import PromptConfig, TEMPLATES, build_messages
from ..resources import shipped_dir
from .pretokenizers import QWEN2_SPLIT

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
# ChatML, as Qwen2.5 writes it, without Qwen's default system prompt.
CHATML = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def build_tiny_model(out: str | Path, arch: str = "qwen2", *, layers: int = 2, hidden: int = 64,
                     vocab_size: int = 1024, seed: int = 0) -> Path:
    """Write a tiny random causal LM and its tokenizer to ``out``; returns the folder."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

    tokenizer = build_tokenizer(vocab_size)
    config_class, model_class = {"qwen2": (Qwen2Config, Qwen2ForCausalLM),
                                 "llama": (LlamaConfig, LlamaForCausalLM)}[arch]
    config = _config(config_class, tokenizer, hidden_size=hidden, intermediate_size=hidden * 2,
                     num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
                     max_position_embeddings=1024)
    torch.manual_seed(seed)
    return _save(model_class(config), tokenizer, Path(out))


# Layer dimensions of real models (their config.json), for benchmarks with random weights.
SHAPES = {
    "qwen2.5-7b": {"hidden_size": 3584, "intermediate_size": 18944, "num_hidden_layers": 28,
                   "num_attention_heads": 28, "num_key_value_heads": 4, "rope_theta": 1e6},
    "qwen2.5-14b": {"hidden_size": 5120, "intermediate_size": 13824, "num_hidden_layers": 48,
                    "num_attention_heads": 40, "num_key_value_heads": 8, "rope_theta": 1e6},
}


# Qwen2.5-7B's and -14B's embedding rows: the output layer and the loss over them are a large share of the cost.
QWEN25_VOCABULARY = 152064


def build_shaped_model(out: str | Path, shape: str, seed: int = 0, real_vocabulary: bool = False) -> Path:
    """Write a random Qwen2 model with the layers of ``shape`` (a key of :data:`SHAPES`) in bfloat16, and the
    tiny tokenizer, to ``out``; with ``real_vocabulary``, the real model's number of embedding rows too (the
    tokenizer still uses the first thousand). The weights are made on the GPU when there is one (seconds for a
    7B)."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    tokenizer = build_tokenizer()
    vocabulary = {"vocab_size": QWEN25_VOCABULARY} if real_vocabulary else {}
    config = _config(Qwen2Config, tokenizer, max_position_embeddings=32768, **SHAPES[shape], **vocabulary)
    torch.manual_seed(seed)
    with torch.device("cuda" if torch.cuda.is_available() else "cpu"):
        model = Qwen2ForCausalLM._from_config(config, dtype=torch.bfloat16)
    out = _save(model, tokenizer, Path(out))
    del model
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return out


def _config(config_class, tokenizer, **dimensions):
    """A model config for ``tokenizer``: its vocabulary and special tokens, untied input and output
    embeddings (a tiny model trains them apart, see the smoke recipe)."""
    return config_class(**{
        "vocab_size": len(tokenizer), "tie_word_embeddings": False, "bos_token_id": None,
        "eos_token_id": tokenizer.convert_tokens_to_ids("<|im_end|>"),
        "pad_token_id": tokenizer.convert_tokens_to_ids("<|endoftext|>"), **dimensions,
    })


def _save(model, tokenizer, out: Path) -> Path:
    """Save the model and tokenizer as the folder ``out`` (absent or empty), which appears only when whole."""
    model.generation_config.eos_token_id = model.config.eos_token_id
    model.generation_config.pad_token_id = model.config.pad_token_id
    with whole_folder(out) as partial:
        model.save_pretrained(partial)
        tokenizer.save_pretrained(partial)
    return out


def build_tokenizer(vocab_size: int = 1024):
    """A byte-level BPE tokenizer with ChatML special tokens, trained on :func:`tokenizer_corpus`."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    # Each Chinese character is its own word, so merges stay inside it: on our repetitive corpus, plain
    # byte-level BPE would merge whole questions into single tokens and nothing would generalise.
    # Qwen2's pre-tokenizer, so llama.cpp tokenizes a GGUF export the same way (its "qwen2" pre-tokenizer).
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_SPLIT), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False),
    ])
    tokenizer.decoder = decoders.ByteLevel()
    # At most three byte symbols a token: one Chinese character. On our repetitive corpus, longer merges would
    # join whole phrases of Chinese into single tokens and nothing would generalise.
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, max_token_length=3,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tokenizer.train_from_iterator(tokenizer_corpus(), trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, eos_token="<|im_end|>", pad_token="<|endoftext|>",
        additional_special_tokens=SPECIAL_TOKENS[1:], chat_template=CHATML, model_max_length=1024,
        padding_side="left",
    )


def tokenizer_corpus() -> list[str]:
    """Our own text: the prompt templates around synthetic and shipped questions."""
    questions: list[Question] = synth_questions(400, seed=0)
    for path in sorted(shipped_dir("data").glob("*.*sv")):
        questions += read_questions(path)
    texts = []
    for q in questions:
        for template in TEMPLATES:
            texts += [m["content"] for m in build_messages(q, PromptConfig(template))]
        texts += [q.reasoning or "", f"答案：{q.answer}", f"Answer: {q.answer}"]
    return [t for t in texts if t]
