"""Tiny models and the two backends: 4-bit loading, LoRA on all seven projections, letter scoring."""

import json

import pytest

from mcq_unsloth import Question
from mcq_unsloth.config import LoraConfig, ModelConfig
from mcq_unsloth.inference import letter_token_ids, score_questions
from mcq_unsloth.models import ModelLoadError, load_model, resolve_backend
from mcq_unsloth.prompts import PromptConfig
from mcq_unsloth.synth import synth_questions


def test_tiny_tokenizer_round_trips_chinese_and_has_single_letter_tokens(tiny_tokenizer):
    text = "中國的首都是哪座城市？答案：B。龘"  # traditional, punctuation and a rare character
    assert tiny_tokenizer.decode(tiny_tokenizer.encode(text, add_special_tokens=False)) == text
    assert len(set(letter_token_ids(tiny_tokenizer, "ABCD").values())) == 4
    assert tiny_tokenizer.eos_token == "<|im_end|>"


def test_tiny_model_config(tiny_model_dir):
    config = json.loads((tiny_model_dir / "config.json").read_text())
    assert config["model_type"] == "qwen2" and config["hidden_size"] == 64 and config["num_hidden_layers"] == 2


def test_shaped_models_have_the_real_layers_and_load_in_4bit(tmp_path, monkeypatch):
    """``bench inference --shape`` builds these; a small made-up shape keeps the test quick."""
    from mcq_unsloth import tiny

    assert tiny.SHAPES["qwen2.5-7b"]["hidden_size"] == 3584 and tiny.SHAPES["qwen2.5-7b"]["num_hidden_layers"] == 28
    monkeypatch.setitem(tiny.SHAPES, "small", {"hidden_size": 128, "intermediate_size": 320, "num_hidden_layers": 3,
                                               "num_attention_heads": 4, "num_key_value_heads": 2})
    folder = tiny.build_shaped_model(tmp_path / "small", "small")
    config = json.loads((folder / "config.json").read_text())
    assert (config["hidden_size"], config["intermediate_size"], config["num_hidden_layers"]) == (128, 320, 3)
    assert config["dtype"] == "bfloat16"
    loaded = load_model(ModelConfig(name=str(folder), backend="hf", dtype="float32"), None)
    assert [type(m).__name__ for m in loaded.model.modules()].count("Linear4bit") == 3 * 7
    (scored,) = score_questions(loaded.model, loaded.tokenizer, synth_questions(1, seed=0))
    assert sum(scored.probabilities.values()) == pytest.approx(1.0)


def test_backends_load_4bit_with_lora_on_every_projection(tiny_model_dir, backend):
    loaded = load_model(ModelConfig(name=str(tiny_model_dir), backend=backend), LoraConfig(r=4, lora_alpha=8))
    assert loaded.backend == backend
    names = {name for name, p in loaded.model.named_parameters() if p.requires_grad}
    for projection in LoraConfig().target_modules:
        assert any(f"{projection}.lora_A" in name for name in names), projection
    assert all("lora_" in name for name in names)  # the base stays frozen
    quantized = [m for m in loaded.model.modules() if type(m).__name__ == "Linear4bit"]
    assert quantized, "expected bitsandbytes 4-bit layers"


def test_auto_prefers_unsloth_when_it_imports(pytestconfig):
    assert resolve_backend("auto") == ("hf" if pytestconfig.unsloth_reason else "unsloth")
    assert resolve_backend("hf") == "hf"


def test_unreachable_models_say_what_to_do(tmp_path):
    with pytest.raises(ModelLoadError, match="--set model.name=LOCAL_PATH"):
        load_model(ModelConfig(name="nobody/no-such-model", backend="hf"), None)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelLoadError, match="no config.json"):
        load_model(ModelConfig(name=str(tmp_path / "empty"), backend="hf"), None)
    with pytest.raises(ModelLoadError, match="neither a local folder nor a Hub id"):
        load_model(ModelConfig(name="./missing/folder/here", backend="hf"), None)


@pytest.fixture
def no_network(monkeypatch):
    """A machine whose Hub lookups fail at once, as with no network; any file download attempt fails the test."""
    import httpx
    import huggingface_hub
    import huggingface_hub.file_download

    def unreachable(*args, **kwargs):
        raise httpx.ConnectError("[Errno -2] Name or service not known")

    def no_download(*args, **kwargs):
        raise AssertionError("a Hub download was attempted")

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)  # the suite runs offline otherwise
    monkeypatch.setattr(huggingface_hub.HfApi, "model_info", unreachable)
    monkeypatch.setattr(huggingface_hub.file_download, "get_hf_file_metadata", no_download)


@pytest.fixture
def hub_cache(tmp_path, monkeypatch, tiny_model_dir):
    """A local Hugging Face cache holding the tiny model as the Hub model ``someone/tiny``."""
    import shutil

    from huggingface_hub import constants

    repo = tmp_path / "hub" / "models--someone--tiny"
    shutil.copytree(tiny_model_dir, repo / "snapshots" / "0123abcd")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0123abcd")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    return repo / "snapshots" / "0123abcd"


def test_without_network_a_cached_hub_model_loads_from_the_cache_alone(no_network, hub_cache, backend, tmp_path):
    """transformers would spend 100-150 s retrying downloads before using the cache: we load from the cache."""
    from peft import LoraConfig as PeftLoraConfig
    from peft import get_peft_model

    loaded = load_model(ModelConfig(name="someone/tiny", backend=backend, load_in_4bit=False), None)
    assert loaded.model.config.hidden_size == 64
    adapter = tmp_path / "adapter"  # an adapter whose base is the cached Hub model
    local = load_model(ModelConfig(name=str(hub_cache), backend="hf", load_in_4bit=False), None).model
    get_peft_model(local, PeftLoraConfig(r=2, lora_alpha=4, target_modules=["q_proj"])).save_pretrained(adapter)
    config = json.loads((adapter / "adapter_config.json").read_text())
    (adapter / "adapter_config.json").write_text(json.dumps({**config, "base_model_name_or_path": "someone/tiny"}))
    assert load_model(ModelConfig(name=str(adapter), backend=backend, load_in_4bit=False), None).model is not None


def test_without_network_an_uncached_hub_model_fails_at_once(no_network, hub_cache, tmp_path):
    with pytest.raises(ModelLoadError, match="not in the local Hugging Face cache and the Hub cannot be reached"):
        load_model(ModelConfig(name="someone/other", backend="hf"), None)
    with pytest.raises(ModelLoadError, match="nor a valid Hub id"):
        load_model(ModelConfig(name="someone/with space", backend="hf"), None)
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "/gone/tiny-base"}))
    with pytest.raises(ModelLoadError, match="LoRA adapter whose base model .* cannot be loaded"):
        load_model(ModelConfig(name=str(adapter), backend="hf"), None)


@pytest.fixture(scope="module")
def inference_model(tiny_model_dir):
    return load_model(ModelConfig(name=str(tiny_model_dir), backend="hf", load_in_4bit=False, dtype="float32"), None)


def test_batched_scores_equal_one_at_a_time(inference_model):
    """Left padding must not change a question's letter probabilities (position ids follow the padding)."""
    questions = synth_questions(6, seed=3, kinds=["lookup", "count", "match"])
    questions.append(Question("long", "这是一个特别长的问题，" * 8, {"A": "甲", "B": "乙"}, "A"))
    model, tokenizer = inference_model.model, inference_model.tokenizer
    batched = score_questions(model, tokenizer, questions, batch_size=7)
    for q, together in zip(questions, batched):
        (alone,) = score_questions(model, tokenizer, [q], batch_size=1)
        assert together.id == alone.id == q.id
        assert list(together.probabilities) == list(q.options)
        for letter in q.options:
            assert together.probabilities[letter] == pytest.approx(alone.probabilities[letter], abs=1e-5)
        assert sum(together.probabilities.values()) == pytest.approx(1.0)


def test_scores_with_the_shared_prefix_cached_equal_a_plain_forward_pass(tiny_model_dir, backend):
    """The prompts' shared start runs once and batches reuse its keys and values: each question's letter
    probabilities must still equal one full forward pass over its whole prompt, 4-bit, on both backends."""
    import torch

    from mcq_unsloth.inference import prompt_prefix, prompt_token_ids, shared_start

    loaded = load_model(ModelConfig(name=str(tiny_model_dir), backend=backend), None)
    model, tokenizer = loaded.model, loaded.tokenizer
    questions = synth_questions(9, seed=5, kinds=["lookup", "count", "match"])
    questions.append(Question("two", "这是一个特别长的问题，" * 6, {"A": "甲", "B": "乙"}, "B"))
    prompts = prompt_token_ids(tokenizer, questions)
    prefix = prompt_prefix(model, shared_start(prompts))
    assert prefix is not None and len(prefix.token_ids) >= 30  # chat header, system prompt, instruction
    letters = letter_token_ids(tokenizer, "ABCD")
    device = next(model.parameters()).device
    tolerance = 1e-5 if model.dtype == torch.float32 else 2e-2  # bfloat16 on a GPU
    for scored in (score_questions(model, tokenizer, questions, batch_size=4),
                   score_questions(model, tokenizer, questions, batch_size=3, prefix=prefix)):
        for q, ids, got in zip(questions, prompts, scored):
            with torch.inference_mode():
                row = model(input_ids=torch.tensor([ids], device=device)).logits[0, -1].float()
            expected = torch.softmax(row[[letters[x] for x in q.options]], dim=-1).tolist()
            assert list(got.probabilities.values()) == pytest.approx(expected, abs=tolerance), q.id
    with pytest.raises(ValueError, match="do not start with the given prefix"):
        score_questions(model, tokenizer, questions[:2], prompt=PromptConfig("en"), prefix=prefix)
