"""Which precision a model runs in: inference defaults that do not change answers, and what the CLI says."""

import json

import pytest
from click.testing import CliRunner

from mcq_unsloth.cli.main import main
from mcq_unsloth.data.questions import write_questions
from mcq_unsloth.model.precision import inference_precision, resolve_dtype
from mcq_unsloth.data.synthetic import synth_questions

QLORA = {"load_in_4bit": True, "dtype": "bfloat16"}
FP16_RUN = {"load_in_4bit": False, "dtype": "float16"}

CASES = [
    # (dtype, --4bit, training record, cuda, bf16 supported) -> (dtype, 4-bit)
    (("auto", None, None, False, False), ("float32", False)),     # CPU: full precision
    (("auto", None, QLORA, False, False), ("float32", False)),    # CPU: not even a QLoRA adapter in 4-bit
    (("auto", True, None, False, False), ("float32", True)),      # CPU: 4-bit when asked
    (("bfloat16", None, None, False, False), ("bfloat16", False)),  # CPU: bfloat16 when asked
    (("auto", None, None, True, True), ("bfloat16", False)),      # GPU, base or merged model: 16 bits
    (("auto", None, None, True, False), ("float16", False)),      # GPU without bfloat16
    (("auto", None, QLORA, True, True), ("bfloat16", True)),      # GPU, QLoRA adapter: as trained
    (("auto", None, FP16_RUN, True, True), ("float16", False)),   # GPU, 16-bit adapter: as trained
    (("auto", False, QLORA, True, True), ("bfloat16", False)),    # GPU: --no-4bit overrides the record
    (("float32", None, QLORA, True, True), ("float32", True)),    # GPU: --dtype overrides, 4-bit kept
    (("auto", True, None, True, True), ("bfloat16", True)),       # GPU: --4bit for a base model
]


@pytest.mark.parametrize("given,expected", CASES)
def test_inference_precision(given, expected):
    dtype, four_bit, trained, cuda, bf16 = given
    chosen = inference_precision(dtype, four_bit, trained, cuda=cuda, bf16_supported=bf16)
    assert (chosen.dtype, chosen.load_in_4bit) == expected
    assert chosen.why  # every choice says why


def test_training_resolves_auto_the_same_way():
    assert resolve_dtype("auto", cuda=False) == "float32"
    assert resolve_dtype("auto", cuda=True, bf16_supported=True) == "bfloat16"


def test_the_cli_says_which_precision_it_uses_and_never_quantizes_on_cpu_unless_asked(tmp_path, tiny_model_dir):
    import torch

    from mcq_unsloth import load

    if torch.cuda.is_available():
        pytest.skip("CPU defaults")
    for four_bit, layers in ((None, 0), (True, 14)):  # 2 layers x 7 projections
        loaded = load(str(tiny_model_dir), backend="hf", dtype="auto", load_in_4bit=four_bit)
        assert [type(m).__name__ for m in loaded.model.modules()].count("Linear4bit") == layers
    data = tmp_path / "q.csv"
    write_questions(synth_questions(6, seed=1), data)
    common = ["--model", str(tiny_model_dir), "--data", str(data), "--backend", "hf"]
    plain = CliRunner().invoke(main, ["predict", *common, "--out", str(tmp_path / "a.csv")])
    assert plain.exit_code == 0, plain.output
    assert "precision float32 (the CPU default: full precision, never 4-bit unless asked)" in plain.output
    assert json.loads(plain.stdout.strip().splitlines()[-1])["precision"].startswith("float32")
    asked = CliRunner().invoke(main, ["predict", *common, "--out", str(tmp_path / "b.csv"), "--4bit",
                                      "--dtype", "bfloat16"])
    assert asked.exit_code == 0, asked.output
    assert "precision 4-bit NF4 weights, bfloat16 compute (as asked)" in asked.output
    bench = CliRunner().invoke(main, ["bench", "inference", "--model", str(tiny_model_dir), "--n", "8",
                                      "--one-at-a-time", "2", "--repeat", "1", "--backend", "hf"])
    assert bench.exit_code == 0, bench.output
    header = next(line for line in bench.stdout.splitlines() if line.startswith("model "))
    assert "precision float32 (the CPU default" in header
