"""The training and inference benchmark: both backends, each job in its own process, the three output files; and
the vanilla inference path tested as users run it, in a process that never imports Unsloth."""

import json
import os
import subprocess
import sys

import pytest

from click.testing import CliRunner

from mcq_unsloth.inference.transformers_model import TransformersModel
from mcq_unsloth.cli.main import main


@pytest.mark.slow
def test_a_minimal_bench_on_the_tiny_model(tmp_path):
    out = tmp_path / "bench"
    result = CliRunner().invoke(main, ["bench", "--tasks", "sft,score", "--quick", "--steps", "1", "--seq-len", "64",
                                       "--out", str(out)])
    assert result.exit_code == 0, result.output
    bench = json.loads((out / "bench.json").read_text())
    rows = bench["rows"]
    assert [(r["task"], r["backend"]) for r in rows] == [("sft", "unsloth"), ("sft", "hf"), ("score", "unsloth"),
                                                         ("score", "hf")]
    for row in rows:
        assert {"samples_per_s", "tokens_per_s", "peak_mem_mb", "seconds", "steps", "median_step_s", "device",
                "pid", "unsloth_imported"} <= set(row)
        assert row["samples_per_s"] > 0 and row["peak_mem_mb"] > 0 and row["steps"] == 1
    assert len({r["pid"] for r in rows} | {os.getpid()}) == 5  # a process of its own for each job
    assert [r["unsloth_imported"] for r in rows] == [True, True, True, False]  # hf SFT on a CPU needs its kernels
    assert "CPU loss kernels" in rows[1]["note"]
    assert {(r["task"], r["variant"]) for r in bench["ratios"]} == {("sft", None), ("score", "batch 16")}
    assert bench["env"]["versions"]["transformers"] and bench["env"]["settings"]["seq_len"] == 64
    assert "| sft |  | hf | yes |" in (out / "bench.md").read_text()
    assert (out / "bench.png").stat().st_size > 10_000


VANILLA = """
import json, sys
from mcq_unsloth.model.backends import load_model
from mcq_unsloth.inference.answering import PredictSettings
from mcq_unsloth.inference.files import predict_file
from mcq_unsloth.inference.transformers_model import TransformersModel
from mcq_unsloth.data.synthetic import synth_questions
from pathlib import Path
loaded = load_model(sys.argv[1], backend="hf", dtype="float32")
questions = synth_questions(12, seed=4)
for mode, circular in [("score", False), ("generate", False), ("score", True)]:
    out = Path(sys.argv[2]) / f"{mode}-{circular}.csv"
    predict_file(TransformersModel(loaded.model, loaded.tokenizer), questions, out,
                 PredictSettings(mode, 4, circular=circular), progress=False)
print(json.dumps({"unsloth": "unsloth" in sys.modules}))
"""


@pytest.mark.slow
def test_vanilla_inference_without_unsloth_answers_as_in_the_patched_process(tmp_path, tiny_model_dir):
    """The hf backend as users run it (Unsloth never imported) gives the answers it gives here, where the test
    session has Unsloth's patches active."""
    from mcq_unsloth.model.backends import load_model
    from mcq_unsloth.inference.answering import PredictSettings
    from mcq_unsloth.inference.files import predict_file
    from mcq_unsloth.data.synthetic import synth_questions

    (tmp_path / "alone").mkdir()
    done = subprocess.run([sys.executable, "-c", VANILLA, str(tiny_model_dir), str(tmp_path / "alone")],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {"unsloth": False}
    assert "unsloth" in sys.modules
    loaded = load_model(str(tiny_model_dir), backend="hf", dtype="float32")
    for mode, circular in [("score", False), ("generate", False), ("score", True)]:
        here = tmp_path / f"{mode}-{circular}.csv"
        predict_file(TransformersModel(loaded.model, loaded.tokenizer), synth_questions(12, seed=4), here,
                     PredictSettings(mode, 4, circular=circular), progress=False)
        assert here.read_text() == (tmp_path / "alone" / here.name).read_text()
