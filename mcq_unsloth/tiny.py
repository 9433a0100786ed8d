"""Tiny random models for tests and smoke runs, built in seconds on a CPU with no download.

A tiny model is a normal Hugging Face folder: a few-layer Qwen2 or Llama with hidden size 64 and a byte-level
BPE tokenizer trained on our own Chinese and English text (so every character can be written, and frequent
ones are single tokens), with a ChatML chat template like Qwen's.
"""

from __future__ import annotations

from pathlib import Path

from .data import Question
from .prompts import TEMPLATES, PromptConfig, build_messages
from .resources import shipped_dir
from .synth import synth_questions

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

    out = Path(out)
    tokenizer = build_tokenizer(vocab_size)
    config_class, model_class = {"qwen2": (Qwen2Config, Qwen2ForCausalLM),
                                 "llama": (LlamaConfig, LlamaForCausalLM)}[arch]
    config = config_class(
        vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=hidden * 2, num_hidden_layers=layers,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
        tie_word_embeddings=False, bos_token_id=None,
        eos_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"),
        pad_token_id=tokenizer.convert_tokens_to_ids("<|endoftext|>"),
    )
    torch.manual_seed(seed)
    model = model_class(config)
    model.generation_config.eos_token_id = config.eos_token_id
    model.generation_config.pad_token_id = config.pad_token_id
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def build_tokenizer(vocab_size: int = 1024):
    """A byte-level BPE tokenizer with ChatML special tokens, trained on :func:`tokenizer_corpus`."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    # Each Chinese character is its own word, so merges stay inside it: on our repetitive corpus, plain
    # byte-level BPE would merge whole questions into single tokens and nothing would generalise.
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(r"\p{Han}"), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False),
    ])
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tokenizer.train_from_iterator(tokenizer_corpus(), trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, eos_token="<|im_end|>", pad_token="<|endoftext|>",
        additional_special_tokens=SPECIAL_TOKENS[1:], chat_template=CHATML, model_max_length=1024,
        padding_side="left",
    )


def tokenizer_corpus() -> list[str]:
    """Our own text: the prompt templates around synthetic and shipped questions."""
    from .data import load_questions

    questions: list[Question] = synth_questions(400, seed=0)
    for path in sorted(shipped_dir("data").glob("*.*sv")):
        questions += load_questions(path)
    texts = []
    for q in questions:
        for template in TEMPLATES:
            texts += [m["content"] for m in build_messages(q, PromptConfig(template))]
        texts += [q.reasoning or "", f"答案：{q.answer}", f"Answer: {q.answer}"]
    return [t for t in texts if t]
