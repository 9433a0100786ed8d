"""Export: merged models equal their adapters, GGUF files that gguf-py reads back and llama.cpp (the independent
implementation) tokenizes and answers like transformers, on the tiny models and on SmolLM2."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from mcq_unsloth.cli.main import main
from mcq_unsloth.convert.gguf_writer import write_gguf
from mcq_unsloth.convert.verify import check_targets, verify_gguf
from mcq_unsloth import load_questions
from mcq_unsloth.data.synthetic import synth_questions
from mcq_unsloth.errors import ExportError
from mcq_unsloth.resources import shipped_file

import gguf
llama_cpp = pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed (make install builds it)")

QUICK = ["data.train=synth:48", "data.validation=synth-held-out:16", "train.max_steps=4", "train.save_steps=4",
         "train.eval_steps=4", "train.per_device_train_batch_size=8"]


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def last_json(result):
    assert result.exit_code == 0, result.output + repr(result.exception)
    return json.loads(result.stdout.strip().splitlines()[-1])


def fields(path):
    reader = gguf.GGUFReader(path)
    return reader, {name: field.contents() for name, field in reader.fields.items()
                    if not name.startswith(("tokenizer.ggml.tokens", "tokenizer.ggml.merges", "tokenizer.ggml.token_type"))}


@pytest.fixture(scope="module")
def tiny_llama_dir(tmp_path_factory):
    from mcq_unsloth.model.tiny_models import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "llama", "llama")


@pytest.mark.parametrize("arch", ["qwen2", "llama"])
def test_gguf_metadata_read_back_by_gguf_py(tmp_path, arch, tiny_model_dir, tiny_llama_dir, tiny_tokenizer):
    folder = tiny_model_dir if arch == "qwen2" else tiny_llama_dir
    path = write_gguf(folder, tmp_path / "m.gguf", "q8_0", progress=False)
    reader, meta = fields(path)
    config = json.loads((folder / "config.json").read_text())
    assert meta["general.architecture"] == arch and meta["general.file_type"] == 7
    assert meta[f"{arch}.block_count"] == config["num_hidden_layers"]
    assert meta[f"{arch}.attention.head_count_kv"] == config["num_key_value_heads"]
    assert meta[f"{arch}.context_length"] == 1024 and meta[f"{arch}.embedding_length"] == 64
    assert meta["tokenizer.ggml.model"] == "gpt2" and meta["tokenizer.ggml.pre"] == "qwen2"
    assert meta["tokenizer.ggml.eos_token_id"] == tiny_tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert meta["tokenizer.ggml.add_bos_token"] is False
    assert meta["tokenizer.chat_template"] == tiny_tokenizer.chat_template
    assert reader.fields["tokenizer.ggml.tokens"].contents()[:3] == ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    assert len(reader.fields["tokenizer.ggml.merges"].contents()) > 100
    types = {t.name: t.tensor_type.name for t in reader.tensors}
    assert types["token_embd.weight"] == "Q8_0" and types["output.weight"] == "Q8_0"
    assert types["blk.0.attn_norm.weight"] == "F32"
    assert ("blk.0.attn_q.bias" in types) == (arch == "qwen2")  # Qwen2 keeps its q/k/v biases


@pytest.mark.parametrize("arch", ["qwen2", "llama"])
@pytest.mark.parametrize("quant", ["f16", "q8_0"])
def test_llama_cpp_tokenizes_and_answers_like_transformers(tmp_path, arch, quant, tiny_model_dir, tiny_llama_dir):
    folder = tiny_model_dir if arch == "qwen2" else tiny_llama_dir
    path = write_gguf(folder, tmp_path / "m.gguf", quant, progress=False)
    # Chinese questions with digits and punctuation, and the synthetic ones.
    questions = load_questions(shipped_file("mcq_zh.csv"))[:40] + synth_questions(20, seed=5)
    result = verify_gguf(path, folder, questions, progress=False)
    assert result["tokenization_identical"] == 60
    assert check_targets(result, quant) is None
    assert result["agreement"] >= 0.98


@pytest.mark.slow
def test_the_llama_layout_matters(tmp_path, smollm2_dir):
    """Without the q/k reordering, llama.cpp's rotary embedding scrambles a Llama model's attention: the check
    SmolLM2 passes below fails on a file written without it (a random tiny model's attention barely matters)."""
    import mcq_unsloth.convert.gguf_writer as gguf_file

    original = gguf_file._rotary_pairs
    gguf_file._rotary_pairs = lambda weights, heads: weights
    try:
        path = write_gguf(smollm2_dir, tmp_path / "m.gguf", "f16", progress=False)
    finally:
        gguf_file._rotary_pairs = original
    result = verify_gguf(path, smollm2_dir, load_questions(shipped_file("mcq_zh.csv"))[:20], progress=False)
    assert result["max_probability_difference"] > 0.05
    with pytest.raises(ExportError, match="does not answer like its source"):
        check_targets(result, "f16")


def test_an_unknown_pre_tokenizer_is_refused(tmp_path, tiny_model_dir):
    folder = tmp_path / "model"
    shutil.copytree(tiny_model_dir, folder)
    tokenizer = json.loads((folder / "tokenizer.json").read_text())
    tokenizer["pre_tokenizer"] = {"type": "Whitespace"}
    (folder / "tokenizer.json").write_text(json.dumps(tokenizer))
    with pytest.raises(ExportError, match="none that llama.cpp knows by name here"):
        write_gguf(folder, tmp_path / "m.gguf", progress=False)
    assert not (tmp_path / "m.gguf").exists()
    result = run("export", folder, "--format", "gguf", "--out", tmp_path / "out")
    assert result.exit_code == 2 and "Error: the tokenizer's pre-tokenizer" in result.stderr
    assert not (tmp_path / "out").exists()  # no half export left behind


@pytest.mark.slow
@pytest.mark.parametrize("four_bit", [False, True], ids=["16-bit, full head", "QLoRA"])
def test_merged_equals_the_adapter(tmp_path, backend, run_recipe, four_bit):
    """The smoke recipe trains embeddings and the output layer in full beside LoRA; the QLoRA variant trains a
    4-bit base's seven projections. Merged into float32 weights, loaded back from disk, the letter
    probabilities must be the adapter's."""
    extra = ["model.load_in_4bit=true", "lora.target_modules=[q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj]"]
    run_recipe("smoke", tmp_path / "run", QUICK + [f"model.backend={backend}"] + (extra if four_bit else []))
    result = last_json(run("export", tmp_path / "run", "--format", "merged", "--dtype", "float32", "--out",
                           tmp_path / "merged"))
    assert result["questions_compared"] == 16 and result["max_probability_difference"] <= 1e-4
    assert {"config.json", "model.safetensors", "tokenizer.json", "generation_config.json"} <= {
        p.name for p in (tmp_path / "merged").iterdir()}
    assert not (tmp_path / "merged" / "adapter_config.json").exists()
    bf16 = last_json(run("export", tmp_path / "run", "--format", "merged", "--out", tmp_path / "bf16"))
    assert bf16["dtype"] == "bfloat16" and bf16["max_probability_difference"] <= 0.05
    lora = last_json(run("export", tmp_path / "run", "--format", "lora", "--checkpoint", 4, "--out", tmp_path / "ck"))
    assert lora["source"].endswith("checkpoint-4") and "adapter_model.safetensors" in lora["files"]
    missing = run("export", tmp_path / "run", "--format", "lora", "--checkpoint", 9, "--out", tmp_path / "ck9")
    assert missing.exit_code == 2 and "has no checkpoints/checkpoint-9" in missing.stderr


def test_a_trained_head_on_tied_embeddings_is_untied(tmp_path, tiny_model_dir):
    """A model that ties its output layer to its embeddings, with the output layer trained in full: the merged
    model must keep the trained layer, not tie it back."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    config = AutoConfig.from_pretrained(tiny_model_dir)
    config.tie_word_embeddings = True
    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_config(config)
    base.save_pretrained(tmp_path / "base")
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(tmp_path / "base")
    peft = get_peft_model(base, LoraConfig(r=4, target_modules=["q_proj"], modules_to_save=["lm_head"],
                                           init_lora_weights=False))
    with torch.no_grad():
        head = peft.base_model.model.lm_head.modules_to_save["default"]
        head.weight = torch.nn.Parameter(head.weight + 0.5 * torch.randn_like(head.weight))
    peft.save_pretrained(tmp_path / "adapter")
    result = last_json(run("export", tmp_path / "adapter", "--format", "merged", "--dtype", "float32", "--out",
                           tmp_path / "merged"))
    assert result["max_probability_difference"] <= 1e-4
    assert json.loads((tmp_path / "merged" / "config.json").read_text())["tie_word_embeddings"] is False


def test_export_gguf_with_quants_modelfiles_and_verify(tmp_path, tiny_model_dir):
    out = tmp_path / "out"
    result = last_json(run("export", tiny_model_dir, "--format", "gguf", "--quant", "f16", "--quant", "q8_0",
                           "--quant", "q4_k_m", "--out", out, "--verify"))
    assert [g["quant"] for g in result["gguf"]] == ["f16", "q8_0", "q4_k_m"]
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "out-f16.Modelfile", "out-f16.gguf",
                                                     "out-q4_k_m.Modelfile", "out-q4_k_m.gguf", "out-q8_0.Modelfile",
                                                     "out-q8_0.gguf"]
    from huggingface_hub import ModelCard

    card = ModelCard.load(out / "README.md")  # the model card states each file's own verification
    assert {"gguf", "llama.cpp", "mcq-unsloth"} <= set(card.data.to_dict()["tags"])
    assert "`base_model` is left out" in card.text  # a local model without a card: nothing guessed
    for entry in result["gguf"]:
        assert entry["verify"]["tokenization_identical"] == 64  # the q4_k_m file loads and answers
        check = entry["verify"]
        assert (f"`{Path(entry['file']).name}` ({entry['quant']}, {entry['bytes'] / 2**20:.1f} MiB): llama.cpp answers "
                f"like the merged model on {check['agreement']:.1%} of 64 questions") in card.text
    assert fields(out / "out-q4_k_m.gguf")[1]["general.file_type"] == 15
    modelfile = (out / "out-q8_0.Modelfile").read_text()
    assert modelfile.startswith("FROM ./out-q8_0.gguf\nTEMPLATE \"\"\"{{- if .System }}<|im_start|>system\n")
    assert 'SYSTEM """你是一个提供有关中国敏感话题客观答案的助手。' in modelfile
    assert 'PARAMETER stop "<|im_end|>"' in modelfile and "PARAMETER temperature 0" in modelfile
    again = run("export", tiny_model_dir, "--format", "gguf", "--out", out)
    assert again.exit_code == 2 and "--overwrite" in again.stderr
    assert run("export", tiny_model_dir, "--format", "lora", "--out", tmp_path / "x").exit_code == 2


@pytest.mark.slow
def test_smollm2_round_trip(tmp_path, smollm2_dir):
    """A real model and a real 49k-token tokenizer through our converter: f16 meets its target in llama.cpp,
    and our q8_0 weights are bit for bit those of llama.cpp's own quantizer."""
    questions = load_questions(shipped_file("mcq_zh.csv"))[:60]
    f16 = write_gguf(smollm2_dir, tmp_path / "f16.gguf", "f16", progress=False)
    assert fields(f16)[1]["tokenizer.ggml.pre"] == "smollm"
    result = verify_gguf(f16, smollm2_dir, questions, progress=False)
    assert check_targets(result, "f16") is None
    assert result["tokenization_identical"] == 60 and result["max_probability_difference"] < 0.01

    f32 = write_gguf(smollm2_dir, tmp_path / "f32.gguf", "f32", progress=False)
    ours = write_gguf(smollm2_dir, tmp_path / "q8_0.gguf", "q8_0", progress=False)
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = 7  # LLAMA_FTYPE_MOSTLY_Q8_0
    assert llama_cpp.llama_model_quantize(str(f32).encode(), str(tmp_path / "theirs.gguf").encode(), params) == 0
    mine = {t.name: t for t in gguf.GGUFReader(ours).tensors}
    theirs = {t.name: t for t in gguf.GGUFReader(tmp_path / "theirs.gguf").tensors}
    assert sorted(mine) == sorted(theirs) and len(mine) == 272
    assert all(mine[n].tensor_type == theirs[n].tensor_type and np.array_equal(mine[n].data, theirs[n].data)
               for n in mine)


def test_predict_and_eval_answer_through_llama_cpp(tmp_path, tiny_model_dir):
    """--model FILE.gguf: the same answers as the model it came from (float32 weights here), in both modes, with
    the same resume behaviour."""
    last_json(run("export", tiny_model_dir, "--format", "gguf", "--quant", "f32", "--out", tmp_path / "g"))
    data = tmp_path / "q.csv"
    from mcq_unsloth.data.questions import write_questions

    write_questions(synth_questions(30, seed=8), data)
    hf = last_json(run("eval", "--model", tiny_model_dir, "--data", data, "--out-dir", tmp_path / "hf", "--backend",
                       "hf"))
    gguf_eval = run("eval", "--model", tmp_path / "g" / "g-f32.gguf", "--data", data, "--out-dir", tmp_path / "gg")
    assert "llama.cpp, weights f32" in gguf_eval.stderr
    assert last_json(gguf_eval)["accuracy"] == hf["accuracy"]
    assert (tmp_path / "gg" / "predictions.csv").read_text() == (tmp_path / "hf" / "predictions.csv").read_text()
    out = tmp_path / "gen.csv"
    out.write_text("")  # killed before its first answer
    generated = last_json(run("predict", "--model", tmp_path / "g" / "g-f32.gguf", "--data", data, "--out", out,
                              "--mode", "generate", "--resume"))
    assert generated["answered"] == 30 and out.read_text().startswith("id,answer\n")
    assert len(out.read_text().splitlines()) == 31


# --- K-quants' fallbacks ---------------------------------------------------------------------------------------------

def test_k_quant_export_says_its_fallbacks_in_one_line(tmp_path, tiny_model_dir):
    result = run("export", tiny_model_dir, "--format", "gguf", "--quant", "q4_k_m", "--out", tmp_path / "k")
    assert result.exit_code == 0, result.output
    assert "falling back" not in result.stderr
    notes = [line for line in result.stderr.splitlines() if "kept" in line and "out of q4_k_m" in line]
    assert len(notes) == 1 and "as their rows are not a multiple of 256 values" in notes[0]
