"""Writing a Hugging Face model folder as one GGUF file with gguf-py: no llama.cpp checkout, no compiler, no
network.

Qwen2 and Llama architectures. Hyperparameters go under the architecture's keys; tensors take gguf-py's own
names (its tensor map); Llama's q and k projections are reordered into the rotary layout llama.cpp uses for
that architecture (Qwen2 uses the other layout and keeps its q/k/v biases). The tokenizer goes in whole:
tokens and their types, merges, special ids, the name of its pre-tokenizer (llama.cpp splits text with its own
copy of each known pre-tokenizer, so one we cannot name is an error, never a guess) and the chat template. The
end-of-sequence id is the chat template's end of turn, so llama.cpp and Ollama stop where our generation does.

Tensors are converted and written one at a time: memory holds one tensor, not the model.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

from ..errors import ExportError
from ..model.pretokenizers import LLAMA3_SPLIT, QWEN2_SPLIT
from ..prompts import end_of_turn

# llama.cpp's names (tokenizer.ggml.pre) for the pre-tokenizers we recognise, by what tokenizer.json says.
PRE_TOKENIZERS = {
    "qwen2": (("Split", QWEN2_SPLIT, "Isolated", False), ("ByteLevel", False, False)),
    "llama-bpe": (("Split", LLAMA3_SPLIT, "Isolated", False), ("ByteLevel", False, False)),
    "smollm": (("Digits", True), ("ByteLevel", False, True)),
    "gpt-2": (("ByteLevel", False, True),),
}
ARCHITECTURES = {"Qwen2ForCausalLM": "qwen2", "LlamaForCausalLM": "llama"}
GGUF_PY_QUANTS = ("f32", "f16", "bf16", "q8_0")  # what gguf-py writes itself; K-quants come from llama.cpp


def write_gguf(model_dir: str | Path, out: str | Path, quant: str = "f16", progress: bool = True,
               training_record: dict | None = None) -> Path:
    """Write the model in ``model_dir`` (a Hugging Face folder) to the GGUF file ``out`` with weights in
    ``quant`` (one of :data:`GGUF_PY_QUANTS`); the file appears only when complete. ``training_record`` (see
    :func:`mcq_unsloth.training.folders.write_training_record`) goes in as ``mcq_unsloth.training_record``, so
    predictions from the file ask questions as training did. Returns ``out``."""
    import gguf

    model_dir, out = Path(model_dir), Path(out)
    config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    config = {**config, **config.get("text_config", {})}
    arch = ARCHITECTURES.get((config.get("architectures") or ["?"])[0])
    if arch is None:
        raise ExportError(f"{model_dir}: GGUF export handles {', '.join(ARCHITECTURES)}, not "
                          f"{(config.get('architectures') or ['an unnamed architecture'])[0]}")
    tensor_type, file_type = _types(gguf, quant)
    partial = out.with_name(f".{out.name}.partial")
    writer = gguf.GGUFWriter(partial, arch)
    try:
        writer.add_name(model_dir.resolve().name)
        if training_record is not None:
            writer.add_string("mcq_unsloth.training_record", json.dumps(training_record, ensure_ascii=False))
        _hyperparameters(writer, config, file_type)
        _tokenizer(writer, model_dir, config["vocab_size"])
        tensors = _tensors(gguf, model_dir, config, arch, tensor_type)
        for name, shape, kind, _ in tensors:
            block, block_bytes = gguf.GGML_QUANT_SIZES[kind]
            writer.add_tensor_info(name, shape, _numpy_float32(), math.prod(shape) // block * block_bytes,
                                   raw_dtype=kind)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
        from tqdm.auto import tqdm

        for name, shape, kind, read in tqdm(tensors, desc=f"GGUF {quant}", unit="tensor", disable=not progress):
            writer.write_tensor_data(_encode(gguf, read(), kind))
        writer.close()
        os.replace(partial, out)
    finally:
        writer.close()
        partial.unlink(missing_ok=True)
    return out


def pre_tokenizer_name(tokenizer_json: dict) -> str:
    """llama.cpp's name for the tokenizer's pre-tokenizer (how text is split before BPE), read from its
    ``tokenizer.json``. Raises :class:`ExportError` for one it does not know by that name: llama.cpp would split
    text its own way and the GGUF would tokenize differently.

    >>> pre_tokenizer_name({"pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "use_regex": True}})
    'gpt-2'
    """
    signature = _signature(tokenizer_json.get("pre_tokenizer"))
    for name, known in PRE_TOKENIZERS.items():
        if signature == known:
            return name
    raise ExportError(f"the tokenizer's pre-tokenizer {json.dumps(tokenizer_json.get('pre_tokenizer'))[:300]} is "
                      f"none that llama.cpp knows by name here ({', '.join(PRE_TOKENIZERS)}): in a GGUF file "
                      f"llama.cpp would split text differently from transformers, so it is not exported")


def _signature(node: dict | None) -> tuple:
    """What decides how a pre-tokenizer splits text, as a flat tuple of steps."""
    if node is None:
        return ()
    kind = node["type"]
    if kind == "Sequence":
        return tuple(step for child in node["pretokenizers"] for step in _signature(child))
    if kind == "Split":
        pattern = node["pattern"].get("Regex", node["pattern"].get("String"))
        return (("Split", pattern, node["behavior"], node.get("invert", False)),)
    if kind == "ByteLevel":
        return (("ByteLevel", node.get("add_prefix_space", True), node.get("use_regex", True)),)
    if kind == "Digits":
        return (("Digits", node.get("individual_digits", False)),)
    return ((kind, json.dumps(node, sort_keys=True)),)


def _types(gguf, quant: str):
    kinds = {"f32": ("F32", "ALL_F32"), "f16": ("F16", "MOSTLY_F16"), "bf16": ("BF16", "MOSTLY_BF16"),
             "q8_0": ("Q8_0", "MOSTLY_Q8_0")}
    if quant not in kinds:
        raise ExportError(f"gguf-py writes {', '.join(kinds)}; {quant!r} is made from one of them by llama.cpp")
    tensor, file = kinds[quant]
    return gguf.GGMLQuantizationType[tensor], gguf.LlamaFileType[file]


def _hyperparameters(writer, config: dict, file_type) -> None:
    rope = config.get("rope_parameters") or config.get("rope_scaling") or {}
    if rope.get("rope_type", "default") != "default":
        raise ExportError(f"rope scaling {rope['rope_type']!r} is not exported yet; only plain rotary embeddings")
    heads = config["num_attention_heads"]
    head_dim = config.get("head_dim") or config["hidden_size"] // heads
    writer.add_context_length(config["max_position_embeddings"])
    writer.add_embedding_length(config["hidden_size"])
    writer.add_feed_forward_length(config["intermediate_size"])
    writer.add_block_count(config["num_hidden_layers"])
    writer.add_head_count(heads)
    writer.add_head_count_kv(config.get("num_key_value_heads") or heads)
    writer.add_key_length(head_dim)
    writer.add_value_length(head_dim)
    writer.add_rope_dimension_count(head_dim)
    writer.add_rope_freq_base(float(rope.get("rope_theta", config.get("rope_theta", 10000.0))))
    writer.add_layer_norm_rms_eps(float(config["rms_norm_eps"]))
    writer.add_vocab_size(config["vocab_size"])
    writer.add_file_type(file_type)
    writer.add_quantization_version(2)


def _tokenizer(writer, model_dir: Path, vocab_size: int) -> None:
    """Tokens (padded to the embedding's rows), their types, merges, special ids and the chat template."""
    import gguf
    from transformers import AutoTokenizer

    tokenizer_json = json.loads((model_dir / "tokenizer.json").read_text(encoding="utf-8"))
    if tokenizer_json["model"]["type"] != "BPE":
        raise ExportError(f"{model_dir}: GGUF export handles byte-level BPE tokenizers, not "
                          f"{tokenizer_json['model']['type']}")
    pre = pre_tokenizer_name(tokenizer_json)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    by_id = {i: token for token, i in tokenizer.get_vocab().items()}
    added = tokenizer.added_tokens_decoder
    tokens, types = [], []
    for i in range(vocab_size):
        if i not in by_id:
            tokens.append(f"[PAD{i}]")
            types.append(gguf.TokenType.UNUSED)
        elif i in added:
            tokens.append(added[i].content)
            types.append(gguf.TokenType.CONTROL if added[i].special else gguf.TokenType.USER_DEFINED)
        else:
            tokens.append(by_id[i])
            types.append(gguf.TokenType.NORMAL)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(pre)
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    special = gguf.SpecialVocab(model_dir, load_merges=True, n_vocab=len(tokens))
    end = end_of_turn(tokenizer)
    if end is not None:
        special.special_token_ids["eos"] = tokenizer.convert_tokens_to_ids(end)
    special.add_special_token = {"bos": False, "eos": False}  # the chat template writes every special token
    special.chat_template = tokenizer.chat_template
    special.add_to_gguf(writer, quiet=True)


def _tensors(gguf, model_dir: Path, config: dict, arch: str, tensor_type) -> list[tuple]:
    """(GGUF name, shape, type, reader) per tensor, in the order written; a reader loads one as float32 numpy."""
    from safetensors import safe_open

    files = sorted(model_dir.glob("*.safetensors"))
    if not files:
        raise ExportError(f"{model_dir} has no .safetensors weights")
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH[arch.upper()], config["num_hidden_layers"])
    heads, kv_heads = config["num_attention_heads"], config.get("num_key_value_heads") or config["num_attention_heads"]
    found = []
    for file in files:
        with safe_open(file, framework="pt") as source:
            for name in source.keys():
                if name == "lm_head.weight" and config.get("tie_word_embeddings"):
                    continue  # llama.cpp reads the embedding matrix when the file has no output layer
                gguf_name = names.get_name(name, try_suffixes=(".weight", ".bias"))
                if gguf_name is None:
                    raise ExportError(f"{model_dir}: tensor {name} has no GGUF name for {arch}")
                shape = list(source.get_slice(name).get_shape())
                rotary = heads if name.endswith("q_proj.weight") else kv_heads if name.endswith("k_proj.weight") else 0
                kind = _tensor_type(gguf, shape, tensor_type)
                found.append((gguf_name, shape, kind, _reader(file, name, rotary if arch == "llama" else 0)))
    return found


def _tensor_type(gguf, shape: list[int], wanted):
    """Norms and biases stay float32; a matrix whose rows do not fill whole Q8_0 blocks stays float16."""
    if len(shape) == 1:
        return gguf.GGMLQuantizationType.F32
    if wanted == gguf.GGMLQuantizationType.Q8_0 and shape[-1] % 32:
        return gguf.GGMLQuantizationType.F16
    return wanted


def _reader(file: Path, name: str, rotary_heads: int):
    def read():
        from safetensors import safe_open

        with safe_open(file, framework="pt") as source:
            weights = source.get_tensor(name).float().numpy()
        return _rotary_pairs(weights, rotary_heads) if rotary_heads else weights

    return read


def _rotary_pairs(weights, heads: int):
    """Llama's q or k rows reordered from transformers' rotary layout (each head's first half of dimensions,
    then its second) into llama.cpp's (the two halves interleaved as pairs).

    >>> import numpy as np
    >>> _rotary_pairs(np.arange(8).reshape(8, 1), 2).ravel().tolist()
    [0, 2, 1, 3, 4, 6, 5, 7]
    """
    rows = weights.shape[0]
    return (weights.reshape(heads, 2, rows // heads // 2, *weights.shape[1:]).swapaxes(1, 2)
            .reshape(weights.shape))


def _encode(gguf, weights, kind):
    """float32 weights as the bytes of GGUF type ``kind``."""
    if kind == gguf.GGMLQuantizationType.F32:
        return weights.astype("float32")
    return gguf.quants.quantize(weights, kind)


def _numpy_float32():
    import numpy as np

    return np.float32
