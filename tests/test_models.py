"""Tiny models and the two backends: 4-bit loading, LoRA on all seven projections, letter scoring."""

import json
from pathlib import Path

import pytest

from mcq_unsloth import Question
from mcq_unsloth.data.synthetic import synth_questions
from mcq_unsloth.errors import ModelLoadError
from mcq_unsloth.inference.scoring import letter_token_ids, score_questions
from mcq_unsloth.inference.transformers_model import TransformersModel
from mcq_unsloth.model.backends import load_model, resolve_backend
from mcq_unsloth.model.lora import LoraArgs
from mcq_unsloth.prompts import PromptConfig

from helpers import error_line, run


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
    from mcq_unsloth.model import tiny_models as tiny

    assert tiny.SHAPES["qwen2.5-7b"]["hidden_size"] == 3584 and tiny.SHAPES["qwen2.5-7b"]["num_hidden_layers"] == 28
    monkeypatch.setitem(tiny.SHAPES, "small", {"hidden_size": 128, "intermediate_size": 320, "num_hidden_layers": 3,
                                               "num_attention_heads": 4, "num_key_value_heads": 2})
    folder = tiny.build_shaped_model(tmp_path / "small", "small")
    config = json.loads((folder / "config.json").read_text())
    assert (config["hidden_size"], config["intermediate_size"], config["num_hidden_layers"]) == (128, 320, 3)
    assert config["dtype"] == "bfloat16"
    loaded = load_model(str(folder), backend="hf", dtype="float32", load_in_4bit=True)
    assert [type(m).__name__ for m in loaded.model.modules()].count("Linear4bit") == 3 * 7
    (scored,) = score_questions(loaded.model, loaded.tokenizer, synth_questions(1, seed=0))
    assert sum(scored.probabilities.values()) == pytest.approx(1.0)


def test_backends_load_4bit_with_lora_on_every_projection(tiny_model_dir, backend):
    loaded = load_model(str(tiny_model_dir), backend=backend, load_in_4bit=True, lora=LoraArgs(r=4, lora_alpha=8))
    assert loaded.backend == backend
    names = {name for name, p in loaded.model.named_parameters() if p.requires_grad}
    for projection in LoraArgs().target_modules:
        assert any(f"{projection}.lora_A" in name for name in names), projection
    assert all("lora_" in name for name in names)  # the base stays frozen
    quantized = [m for m in loaded.model.modules() if type(m).__name__ == "Linear4bit"]
    assert quantized, "expected bitsandbytes 4-bit layers"


def test_auto_prefers_unsloth_when_it_imports(pytestconfig):
    assert resolve_backend("auto") == ("hf" if pytestconfig.unsloth_reason else "unsloth")
    assert resolve_backend("hf") == "hf"


def test_unreachable_models_say_what_to_do(tmp_path):
    with pytest.raises(ModelLoadError, match="--set model.name=LOCAL_PATH"):
        load_model("nobody/no-such-model", backend="hf")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelLoadError, match="no config.json"):
        load_model(str(tmp_path / "empty"), backend="hf")
    with pytest.raises(ModelLoadError, match="neither a local folder nor a Hub id"):
        load_model("./missing/folder/here", backend="hf")


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
    from peft import LoraConfig
    from peft import get_peft_model

    loaded = load_model("someone/tiny", backend=backend, load_in_4bit=False)
    assert loaded.model.config.hidden_size == 64
    adapter = tmp_path / "adapter"  # an adapter whose base is the cached Hub model
    local = load_model(str(hub_cache), backend="hf", load_in_4bit=False).model
    get_peft_model(local, LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj"])).save_pretrained(adapter)
    config = json.loads((adapter / "adapter_config.json").read_text())
    (adapter / "adapter_config.json").write_text(json.dumps({**config, "base_model_name_or_path": "someone/tiny"}))
    assert load_model(str(adapter), backend=backend, load_in_4bit=False).model is not None


def test_without_network_an_uncached_hub_model_fails_at_once(no_network, hub_cache, tmp_path):
    with pytest.raises(ModelLoadError, match="not in the local Hugging Face cache and the Hub cannot be reached"):
        load_model("someone/other", backend="hf")
    with pytest.raises(ModelLoadError, match="nor a valid Hub id"):
        load_model("someone/with space", backend="hf")
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "/gone/tiny-base"}))
    with pytest.raises(ModelLoadError, match="LoRA adapter whose base model .* cannot be loaded"):
        load_model(str(adapter), backend="hf")


@pytest.fixture(scope="module")
def inference_model(tiny_model_dir):
    return load_model(str(tiny_model_dir), backend="hf", load_in_4bit=False, dtype="float32")


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

    from mcq_unsloth.inference.scoring import prompt_prefix, prompt_token_ids, shared_start

    loaded = load_model(str(tiny_model_dir), backend=backend, load_in_4bit=True)
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


def plain_letter_probabilities(model, tokenizer, question):
    """Softmax over the letters of one full forward pass, with the model's own output layer."""
    import torch

    from mcq_unsloth.inference.scoring import prompt_token_ids

    letters = letter_token_ids(tokenizer, "".join(question.options))
    (ids,) = prompt_token_ids(tokenizer, [question])
    with torch.inference_mode():
        row = model(input_ids=torch.tensor([ids])).logits[0, -1].float()
    return torch.softmax(row[list(letters.values())], dim=-1).tolist()


@pytest.mark.parametrize("head", ["trained in full", "LoRA"])
def test_letters_only_head_reads_peft_output_layers(tiny_model_dir, head):
    """Scoring replaces the output layer by the letters' rows, read through the layer itself: a head trained in
    full (PEFT keeps a copy) or carrying LoRA must give what the model's own head gives, and is put back after."""
    import torch
    from peft import LoraConfig
    from peft import get_peft_model

    base = load_model(str(tiny_model_dir), backend="hf", dtype="float32").model
    settings = ({"target_modules": ["q_proj"], "modules_to_save": ["lm_head"]} if head == "trained in full"
                else {"target_modules": ["q_proj", "lm_head"]})
    model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, init_lora_weights=False, **settings)).eval()
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "lm_head" in name and ("modules_to_save" in name or "lora_" in name):
                parameter.add_(torch.randn_like(parameter) * 0.5)  # so the adapted head differs from the base's
    tokenizer = load_model(str(tiny_model_dir), backend="hf").tokenizer
    questions = synth_questions(5, seed=4)
    for q, scored in zip(questions, score_questions(model, tokenizer, questions, batch_size=2)):
        assert list(scored.probabilities.values()) == pytest.approx(plain_letter_probabilities(model, tokenizer, q),
                                                                    abs=1e-5)
    assert model(input_ids=torch.tensor([[1, 2, 3]])).logits.shape[-1] == len(tokenizer)  # the head is back


def test_exact_ties_are_counted_and_not_given_to_the_first_letter(tiny_model_dir, tmp_path):
    """With the four letters' output rows made identical every question ties: eval must count the ties, and the
    draws must not all go to A."""
    import torch

    from mcq_unsloth.inference.answering import PredictSettings
    from mcq_unsloth.inference.files import evaluate_file

    loaded = load_model(str(tiny_model_dir), backend="hf", dtype="float32")
    ids = list(letter_token_ids(loaded.tokenizer, "ABCD").values())
    with torch.no_grad():
        loaded.model.lm_head.weight[ids] = loaded.model.lm_head.weight[ids[0]].clone()
    questions = synth_questions(40, seed=2, kinds=["lookup", "count"])  # four options each
    result = evaluate_file(TransformersModel(loaded.model, loaded.tokenizer), questions, tmp_path, PredictSettings(), progress=False)
    assert result["ties"] == 40
    assert set(result["predicted"]) == set("ABCD") and max(result["predicted"].values()) < 0.5
    record = json.loads((tmp_path / "predictions.jsonl").read_text().splitlines()[0])
    assert record["tied"] == ["A", "B", "C", "D"]


def test_a_4bit_model_trains_after_being_scored(tiny_model_dir, backend):
    """bitsandbytes repacks 4-bit weights for CPU inference at the first eval-mode forward pass and cannot train
    on them afterwards; a model loaded for training is scored between steps (eval_accuracy) and must still train.
    k_proj, with its bias and no LoRA, is the layer that failed."""
    import torch

    loaded = load_model(str(tiny_model_dir), backend=backend, load_in_4bit=True,
                        lora=LoraArgs(r=2, target_modules=["q_proj", "v_proj"]))
    model = loaded.model
    model.eval()
    score_questions(model, loaded.tokenizer, synth_questions(3, seed=1))
    model.train()
    ids = torch.tensor([[5, 6, 7, 8, 9]])
    model(input_ids=ids, labels=ids).loss.backward()
    assert any(p.grad is not None for name, p in model.named_parameters() if "lora_" in name)


# --- tiny and real-shaped models -------------------------------------------------------------------------------------

def test_tiny_shape_on_a_cpu_is_refused(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present: the shaped model would be built")
    line = error_line(run("tiny", tmp_path / "big", "--shape", "qwen2.5-7b"))
    assert "made on a CUDA GPU, and there is none" in line
    assert not (tmp_path / "big").exists()


def test_an_incomplete_tiny_base_is_rebuilt(tmp_path):
    from mcq_unsloth.model.backends import model_source

    base = tmp_path / "run" / "tiny-base"
    base.mkdir(parents=True)
    (base / "config.json").write_text("{}")  # what a full disk left before model folders were written whole
    assert Path(model_source("tiny:qwen2", tmp_path / "run")) == base.resolve()
    assert (base / "model.safetensors").is_file() and (base / "tokenizer.json").is_file()
