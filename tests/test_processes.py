"""More than one process: training, prediction and evaluation through the real launchers, on CPU over gloo.

Every launch here is a real ``accelerate launch`` (through ``--num-processes``, or its own options for two
"machines" on 127.0.0.1) or ``torchrun``, of ``python -m mcq_unsloth``. The model is the learnt tiny model, so
that accuracies and answers differ from question to question and a wrong merge or a lost share would show.
"""

import glob
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest

from mcq_unsloth import load_questions
from mcq_unsloth.config import Config, GrpoArgs, TrainArgs
from mcq_unsloth.data.questions import write_questions
from mcq_unsloth.errors import ConfigError
from mcq_unsloth.processes import accelerate_config, launch_command
from mcq_unsloth.training.run import check_launch

LAUNCH_TIMEOUT = 600


def mcq(*args, cwd=None, timeout=LAUNCH_TIMEOUT):
    """``python -m mcq_unsloth ARGS`` as a user runs it, in a process of its own."""
    return subprocess.run([sys.executable, "-m", "mcq_unsloth", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=timeout)


def summary(done) -> dict:
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def sets(*items):
    return [a for item in items for a in ("--set", item)]


def digests(stderr: str, step: int) -> list[str]:
    """The trained weights' digests the main process reports at the end of a launch, by process."""
    line = re.search(rf"trained weights after step {step}: (.*): the same on every process", stderr)
    assert line, stderr[-3000:]
    return re.findall(r"process \d+ (\w+)", line.group(1))


def children(pid: int) -> list[int]:
    """The processes whose parent is ``pid``."""
    found = []
    for stat in glob.glob("/proc/[0-9]*/stat"):
        try:
            fields = open(stat).read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.split("/")[2]))
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def node_command(rank: int, port: int, *args) -> list[str]:
    """One machine's ``accelerate launch`` of a two-machine launch (one process each) on this machine."""
    return [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "2", "--num_machines", "2",
            "--machine_rank", str(rank), "--main_process_ip", "127.0.0.1", "--main_process_port", str(port),
            "--mixed_precision", "no", "--dynamo_backend", "no", "--multi_gpu", "-m", "mcq_unsloth", *map(str, args)]


def two_nodes(tmp_path, *args, timeout=LAUNCH_TIMEOUT):
    """Run ``mcq_unsloth ARGS`` as machines 0 and 1, each in its own folder (``node0/``, ``node1/``: two disks);
    returns both finished processes and the seconds the slower one took."""
    port, folders = free_port(), [tmp_path / "node0", tmp_path / "node1"]
    start = time.perf_counter()
    nodes = []
    for rank, folder in enumerate(folders):
        folder.mkdir(exist_ok=True)
        nodes.append(subprocess.Popen(node_command(rank, port, *args), cwd=folder, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True))
    outputs = [node.communicate(timeout=timeout) for node in nodes]
    return [subprocess.CompletedProcess(n.args, n.returncode, *o) for n, o in zip(nodes, outputs)], \
        time.perf_counter() - start


# --- refusals and commands, no launch ---------------------------------------------------------------

def test_the_launch_command_is_accelerates_own():
    command = launch_command(["recipe", "smoke", "--out", "runs/x"], 2)
    assert command[:3] == [sys.executable, "-m", "accelerate.commands.launch"]
    assert command[command.index("--num_processes") + 1] == "2" and "--multi_gpu" in command
    assert command[-6:] == ["-m", "mcq_unsloth", "recipe", "smoke", "--out", "runs/x"]
    # one process: no data-parallel launcher; a config file brings its own strategy
    assert "--multi_gpu" not in launch_command(["predict"], 1)
    with_config = launch_command(["recipe", "smoke"], 2, "ddp")
    assert with_config[with_config.index("--config_file") + 1] == str(accelerate_config("ddp"))
    assert "--multi_gpu" not in with_config


@pytest.mark.parametrize("name", ["ddp", "fsdp_qlora", "zero2", "zero3"])
def test_shipped_accelerate_configs_load_as_accelerate_reads_them(name):
    from accelerate.commands.config.config_args import load_config_from_file

    loaded = load_config_from_file(str(accelerate_config(name)))
    assert loaded.distributed_type.value == {"ddp": "MULTI_GPU", "fsdp_qlora": "FSDP"}.get(name, "DEEPSPEED")
    assert loaded.num_processes == 2 and loaded.compute_environment.value == "LOCAL_MACHINE"
    text = accelerate_config(name).read_text(encoding="utf-8")
    assert text.startswith(f"# {name}:") and "Command: mcq-unsloth recipe" in text
    if name == "fsdp_qlora":
        assert loaded.fsdp_config["fsdp_sharding_strategy"] == "FULL_SHARD"
    if name.startswith("zero"):
        assert loaded.deepspeed_config["zero_stage"] == int(name[-1])


def test_unknown_accelerate_config_names_the_shipped_ones():
    with pytest.raises(ConfigError, match="ddp, fsdp_qlora, zero2, zero3"):
        accelerate_config("fsdp2")


def test_sharding_strategies_refused_here_before_anything_starts():
    # This machine has no GPU: FSDP and DeepSpeed configs stop at once, naming the one that works here.
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU machine can run them")
    for name in ("fsdp_qlora", "zero3"):
        with pytest.raises(ConfigError, match="needs GPUs.*ddp config"):
            launch_command(["recipe", "smoke"], 2, name)


def test_unsloth_backend_refused_under_fsdp_and_deepspeed(monkeypatch):
    config = Config()
    for variable, strategy in (("ACCELERATE_USE_FSDP", "fsdp"), ("ACCELERATE_USE_DEEPSPEED", "deepspeed")):
        with monkeypatch.context() as env:
            env.setenv(variable, "true")
            with pytest.raises(ConfigError, match=f"DDP\\) only, and this launch asks for {strategy}.*model.backend=hf"):
                check_launch(config, 2)


def test_grpo_groups_are_counted_over_the_processes():
    # 2 completions per device hold no group of 4 in one process, and one whole group in two
    config = Config(task="grpo", train=TrainArgs(per_device_train_batch_size=2), grpo=GrpoArgs(num_generations=4))
    check_launch(config, 2)
    with pytest.raises(ConfigError, match="2 x 1 x 1 = 2 .*values that work: 2"):
        check_launch(config, 1)


def test_vllm_generation_refused_in_several_processes():
    config = Config(task="grpo", train=TrainArgs(per_device_train_batch_size=4),
                    grpo=GrpoArgs(num_generations=4, fast_inference=True))
    with pytest.raises(ConfigError, match="fast_inference: vLLM generation in 2 processes is reported to hang"):
        check_launch(config, 2)


# --- training through the launchers ------------------------------------------------------------------

SMOKE = ("train.max_steps=6", "train.save_steps=3", "train.eval_steps=3", "train.per_device_train_batch_size=8",
         "data.train=synth:256", "data.validation=synth-held-out:96")


@pytest.mark.slow
def test_smoke_in_two_processes_writes_one_run_and_resumes_in_one(backend, learnt_model_dir, tmp_path):
    import mcq_unsloth as mu

    run = tmp_path / "run"
    recipe = ["recipe", "smoke", "--out", run, *sets(f"model.name={learnt_model_dir}", f"model.backend={backend}",
                                                     *SMOKE)]
    done = mcq(*recipe, "--num-processes", 2)
    trained = summary(done)
    assert "running: accelerate launch --num_processes 2" in done.stderr
    first, second = digests(done.stderr, 6)
    assert first == second  # both processes ended with the same LoRA weights
    assert len(done.stdout.strip().splitlines()) == 1  # one result, from the main process
    # one writer: one adapter and one record; the processes' own files only where the trainer keeps them
    record = json.loads((run / "run.json").read_text())
    assert record["processes"] == 2 and record["effective_batch"] == 16 == trained["effective_batch"]
    assert sorted(p.name for p in run.iterdir()) == ["adapter", "checkpoints", "config.yaml", "history.jsonl",
                                                     "progress.json", "run.json", "train_curves.png", "validation.jsonl"]
    assert sorted(p.name for p in (run / "checkpoints" / "checkpoint-3").glob("rng_state*")) == \
        ["rng_state_0.pth", "rng_state_1.pth"]
    # the accuracy measured during training on each process's half equals one process measuring the adapter
    alone = mu.evaluate(str(run / "adapter"), run / "validation.jsonl", dtype="float32", load_in_4bit=False,
                        progress=False)
    assert trained["eval_accuracy"] == round(alone["accuracy"], 4) and trained["eval_accuracy"] > 0.5

    shutil.rmtree(run / "checkpoints" / "checkpoint-6")  # as if the launch had stopped after step 3
    done = mcq(*recipe, "--resume")
    resumed = summary(done)
    assert resumed["resumed_from"].endswith("checkpoint-3") and resumed["steps"] == 6
    assert resumed["processes"] == 1 and resumed["effective_batch"] == 8
    assert "last ran in 2 process(es) and resumes in 1" in done.stderr
    assert json.loads((run / "run.json").read_text())["resumed"][-1]["processes"] == 1


@pytest.mark.slow
def test_train_from_python_starts_the_launcher_and_returns_the_run(learnt_model_dir, tmp_path):
    import mcq_unsloth as mu
    from mcq_unsloth.data.synthetic import synth_questions

    overrides = {"model.name": str(learnt_model_dir), "train.max_steps": 2, "train.save_steps": 2,
                 "train.eval_steps": 2, "data.train": "synth:64", "data.validation": "synth-held-out:32"}
    run = mu.train("smoke", num_processes=2, out=tmp_path / "run", overrides=overrides)
    assert run.metrics["processes"] == 2 and run.metrics["steps"] == 2
    assert run.adapter == tmp_path / "run" / "adapter" and (run.adapter / "adapter_model.safetensors").is_file()
    assert run.metrics == json.loads((run.run_dir / "run.json").read_text())["finished"]
    assert list(run.history["eval_accuracy"].dropna())[-1] == run.metrics["eval_accuracy"]
    with pytest.raises(mu.ConfigError, match=r"frame.to_csv\(path\)"):
        mu.train("smoke", num_processes=2, train_data=mu.questions_frame(synth_questions(8)))
    before = (run.run_dir / "run.json").read_bytes()
    with pytest.raises(mu.LaunchError, match="ended with exit code"):
        mu.train("smoke", num_processes=2, out=run.run_dir)  # the processes refuse the existing run
    assert (run.run_dir / "run.json").read_bytes() == before


@pytest.mark.slow
def test_grpo_smoke_in_two_processes_under_torchrun(backend, learnt_model_dir, tmp_path):
    run = tmp_path / "grpo"
    recipe = ["recipe", "grpo_smoke", "--out", run,
              *sets(f"model.name={learnt_model_dir}", f"model.backend={backend}", "train.max_steps=4", "train.save_steps=2", "train.eval_steps=2",
                    "train.per_device_train_batch_size=4", "data.train=synth-held-out:64",
                    "data.validation=synth-held-out:32")]
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m",
                           "mcq_unsloth", *map(str, recipe)], capture_output=True, text=True, timeout=LAUNCH_TIMEOUT)
    trained = summary(done)
    first, second = digests(done.stderr, 4)
    assert first == second and trained["processes"] == 2 and trained["effective_batch"] == 8
    assert "4 per device x 1 accumulation x 2 processes = 8 completions per optimizer step" in done.stderr
    shutil.rmtree(run / "checkpoints" / "checkpoint-4")
    resumed = summary(mcq(*recipe, "--resume"))
    assert resumed["resumed_from"].endswith("checkpoint-2") and resumed["steps"] == 4 and resumed["processes"] == 1


@pytest.mark.slow
def test_two_machines_train_one_run_on_the_main_ones_disk(learnt_model_dir, tmp_path):
    (node0, node1), _ = two_nodes(tmp_path, "recipe", "smoke", "--out", "run",
                                  *sets(f"model.name={learnt_model_dir}", *SMOKE))
    trained = summary(node0)
    assert node1.returncode == 0 and node1.stdout == ""  # machine 1 computes; machine 0 reports
    first, second = digests(node0.stderr, 6)
    assert first == second and trained["processes"] == 2
    assert (tmp_path / "node0" / "run" / "adapter" / "adapter_model.safetensors").is_file()
    # machine 1 wrote nothing of ours; only the trainer's own random state of its process, in its checkpoints
    written = sorted(p.relative_to(tmp_path / "node1").as_posix() for p in (tmp_path / "node1").rglob("*")
                     if p.is_file())
    assert all(re.fullmatch(r"run/checkpoints/checkpoint-\d+/rng_state_1\.pth", p) for p in written), written


@pytest.mark.slow
def test_machines_that_read_different_data_stop_together(learnt_model_dir, tmp_path):
    from mcq_unsloth.data.questions import write_questions
    from mcq_unsloth.data.synthetic import synth_questions

    for node, seed in (("node0", 1), ("node1", 2)):  # the same path, another file on the second machine
        (tmp_path / node).mkdir()
        write_questions(synth_questions(64, seed=seed), tmp_path / node / "train.csv")
    nodes, _ = two_nodes(tmp_path, "recipe", "smoke", "--out", "run",
                         *sets(f"model.name={learnt_model_dir}", "data.train=train.csv", "train.max_steps=2"))
    for node in nodes:
        assert node.returncode != 0
        assert "Error: the processes disagree on the recipe and its data files: process 1" in node.stderr
    assert not (tmp_path / "node0" / "run").exists()  # nothing started, nothing left


@pytest.mark.slow
def test_a_failing_process_ends_the_launch_with_its_message(learnt_model_dir, tmp_path):
    from mcq_unsloth.data.questions import write_questions
    from mcq_unsloth.data.synthetic import synth_questions

    # Machine 1 has the questions but not the model: it stops at once; machine 0, waiting for it, ends too,
    # within seconds (its collective fails when the other process goes), each with one line.
    for node in ("node0", "node1"):
        (tmp_path / node).mkdir()
        write_questions(synth_questions(40, seed=3), tmp_path / node / "q.csv")
    shutil.copytree(learnt_model_dir, tmp_path / "node0" / "model")
    (node0, node1), seconds = two_nodes(tmp_path, "predict", "--model", "model", "--data", "q.csv", "--out", "a.csv",
                                        timeout=300)
    assert node1.returncode != 0 and "Error: model 'model' is neither a local folder" in node1.stderr
    assert node0.returncode != 0
    assert "Error: process 0 stops: another process of the launch stopped" in node0.stderr
    assert seconds < 120


# --- prediction and evaluation through the launcher ---------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("mode", ["score", "generate", "debias"])
def test_predict_in_two_processes_writes_what_one_writes(learnt_model_dir, tmp_path, mode):
    """Each process reads its share of the file alone (a CSV here); debiased, the main process's prior is the one
    every process divides by, and the one a single process estimates."""
    data = tmp_path / "questions.csv"
    write_questions(load_questions("synth-held-out:90"), data)
    options = ["--mode", "score", "--debias", "8"] if mode == "debias" else ["--mode", mode]
    one = tmp_path / "one.csv"
    summary(mcq("predict", "--model", learnt_model_dir, "--data", data, *options, "--out", one, "--raw",
                tmp_path / "one.jsonl"))
    two = tmp_path / "two.csv"
    done = mcq("predict", "--model", learnt_model_dir, "--data", data, *options, "--out", two, "--raw",
               tmp_path / "two.jsonl", "--num-processes", 2)
    counts = summary(done)
    assert counts["answered"] == 90 and counts["processes"] == 2
    assert two.read_text() == one.read_text()
    assert len(set(line.split(",")[1] for line in one.read_text().splitlines()[1:])) > 1  # answers differ
    ones = [json.loads(line) for line in (tmp_path / "one.jsonl").read_text().splitlines()]
    twos = [json.loads(line) for line in (tmp_path / "two.jsonl").read_text().splitlines()]
    assert [r["id"] for r in twos] == [r["id"] for r in ones]
    for a, b in zip(ones, twos):  # batches differ (45 per process), so the floats may in their last digits
        assert a["prediction"] == b["prediction"]
        if mode != "generate":
            assert all(abs(a["probabilities"][k] - b["probabilities"][k]) < 1e-5 for k in a["probabilities"])
        else:
            assert a["text"] == b["text"]
    prior = ["two.csv.prior.json"] if mode == "debias" else []
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("two")) == \
        sorted(["two.csv", "two.csv.settings.json", "two.jsonl", *prior])  # the parts are merged and gone
    if mode == "debias":
        estimated = [json.loads((tmp_path / f"{name}.csv.prior.json").read_text()) for name in ("one", "two")]
        assert estimated[0]["sample"] == estimated[1]["sample"] and len(estimated[0]["sample"]) == 8
        assert all(abs(estimated[0]["prior"]["4"][x] - estimated[1]["prior"]["4"][x]) < 1e-5 for x in "ABCD")
        assert sum(r.get("prior_sample", False) for r in twos) == 8 and counts["prior"]


@pytest.mark.slow
def test_a_bad_row_in_any_share_stops_every_process_with_its_line(learnt_model_dir, tmp_path):
    """Process 0's block is clean; the file's last row (in process 1's block) has no question. Each process checks
    the whole file as it streams it, so both stop before loading the model, with the line one process prints."""
    data = tmp_path / "questions.csv"
    write_questions(load_questions("synth-held-out:40"), data)
    data.write_text(data.read_text(encoding="utf-8") + "bad,,a,b,c,d,A\n", encoding="utf-8")
    one = mcq("predict", "--model", learnt_model_dir, "--data", data, "--out", tmp_path / "one.csv")
    two = mcq("predict", "--model", learnt_model_dir, "--data", data, "--out", tmp_path / "two.csv",
              "--num-processes", 2)
    line = one.stderr.strip().splitlines()[-1]
    assert one.returncode == 2 and "row 41" in line and "the question is empty" in line
    assert two.returncode != 0 and two.stderr.count(line) == 2 and "Traceback" not in two.stderr
    assert not (tmp_path / "two.csv").exists() and not list(tmp_path.glob("two.part-*"))


@pytest.mark.slow
def test_eval_in_two_processes_reports_what_one_reports(learnt_model_dir, tmp_path):
    data = tmp_path / "questions.jsonl"  # read as a stream, a share by each process, the gold letters by the main
    write_questions(load_questions("synth-held-out:90"), data)
    for name, extra in (("one", []), ("two", ["--num-processes", 2])):
        summary(mcq("eval", "--model", learnt_model_dir, "--data", data, "--circular", "--out-dir",
                    tmp_path / name, *extra))
    one, two = (json.loads((tmp_path / name / "metrics.json").read_text()) for name in ("one", "two"))
    for speed in ("seconds", "questions_per_second"):
        one.pop(speed), two.pop(speed)
    assert two == one and 0 < one["accuracy"] < 1 and "position_bias" in one
    assert (tmp_path / "two" / "predictions.csv").read_text() == (tmp_path / "one" / "predictions.csv").read_text()
    assert (tmp_path / "two" / "confusion.png").is_file()


@pytest.mark.slow
def test_two_process_predict_killed_midway_resumes_to_the_same_file(learnt_model_dir, tmp_path):
    data, one, two = "synth-held-out:600", tmp_path / "one.csv", tmp_path / "two.csv"
    summary(mcq("predict", "--model", learnt_model_dir, "--data", data, "--out", one))
    command = [sys.executable, "-m", "mcq_unsloth", "predict", "--model", str(learnt_model_dir), "--data", data,
               "--out", str(two), "--batch-size", "1", "--num-processes", "2"]
    launch = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    parts = [tmp_path / f"two.part-{rank}-of-2.csv" for rank in (0, 1)]
    deadline = time.time() + 300
    while time.time() < deadline and not all(p.is_file() and len(p.read_text().splitlines()) > 20 for p in parts):
        time.sleep(0.2)
    for launcher in children(launch.pid):
        os.kill(launcher, signal.SIGTERM)  # accelerate's launcher ends its processes with the same signal
    launch.wait(timeout=120)
    lines = [len(p.read_text().splitlines()) - 1 for p in parts]
    assert all(20 <= n < 300 for n in lines), lines  # both cut midway through their 300
    assert not two.exists()
    refused = mcq(*command[3:])
    assert refused.returncode != 0 and "holds part of an unfinished launch; pass --resume" in refused.stderr
    other_count = mcq(*command[3:-1], 3, "--resume")
    assert other_count.returncode != 0 and "--num-processes 2" in other_count.stderr
    counts = summary(mcq(*command[3:], "--resume"))
    # a line cut by the kill is asked again
    assert sum(lines) - 2 <= counts["skipped"] <= sum(lines) and counts["answered"] == 600 - counts["skipped"]
    assert two.read_text() == one.read_text()
    assert not any(p.exists() for p in parts)
