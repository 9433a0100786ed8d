"""The offline install of docs/kaggle.md, end to end: scripts/collect_wheels.sh collects from the registry (the
only network these tests use), then a fresh venv installs from that folder alone (--no-index, no pip
configuration) and runs the demo."""

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
COLLECT = ROOT / "scripts" / "collect_wheels.sh"


def collect(out: Path, *options: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(COLLECT), str(out), *options], capture_output=True, text=True,
                          env={**os.environ, "PYTHON": sys.executable})


def offline_pip(venv: Path, *args: str):
    env = {**os.environ, "PIP_CONFIG_FILE": os.devnull}
    subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--no-index", *args],
                   check=True, env=env)


def test_the_collector_refuses_a_folder_it_did_not_write(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    done = collect(tmp_path)
    assert done.returncode == 2 and "holds files this script did not write" in done.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


@pytest.mark.slow
def test_collected_wheels_install_with_the_registry_off_and_the_demo_runs(tmp_path):
    wheels = tmp_path / "wheels"
    done = collect(wheels)
    assert done.returncode == 0, done.stderr
    assert "resolve the install with --no-index" in done.stdout
    names = {p.name.split("-")[0].lower() for p in wheels.glob("*.whl")}
    assert {"torch", "mcq_unsloth", "llama_cpp_python", "unsloth", "unsloth_zoo", "transformers"} <= names
    install = (wheels / "INSTALL.md").read_text()
    assert "--no-index" in install and "glibc >= 2." in install

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    offline_pip(venv, "--find-links", str(wheels), "mcq-unsloth", "llama-cpp-python")
    offline_pip(venv, "--find-links", str(wheels), "--no-deps", "unsloth==2026.10.9", "unsloth_zoo==2026.10.9")
    work = tmp_path / "work"
    work.mkdir()
    demo = subprocess.run([str(venv / "bin" / "mcq-unsloth"), "demo"], cwd=work, capture_output=True, text=True,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert demo.returncode == 0, demo.stderr[-3000:]
    result = json.loads(demo.stdout.strip().splitlines()[-1])
    assert result["accuracy_after"] > result["accuracy_before"] + 0.3
    assert result["gguf_agreement"] >= 0.95  # llama.cpp from the collected wheel answered


@pytest.mark.slow
def test_a_cuda_folder_holds_no_torch_and_every_wheel_fits_the_target(tmp_path):
    wheels = tmp_path / "cuda"
    done = collect(wheels, "--cuda", "--python-version", "3.12")
    assert done.returncode == 0, done.stderr
    files = list(wheels.glob("*.whl"))
    names = {p.name.split("-")[0].lower() for p in files}
    assert not names & {"torch", "torchvision", "triton", "xformers", "torchao"}
    assert not [n for n in names if n.startswith(("nvidia", "cuda"))]
    assert {"mcq_unsloth", "llama_cpp_python", "unsloth", "tyro", "cut_cross_entropy"} <= names
    for wheel in files:  # compiled wheels are CPython 3.12's or the stable ABI's, never this Python's
        python_tag, abi_tag = wheel.name[:-4].split("-")[-3:-1]
        assert python_tag.startswith("py") or python_tag == "cp312" or abi_tag == "abi3", wheel.name
    with zipfile.ZipFile(next(wheels.glob("mcq_unsloth-*.whl"))) as archive:
        assert any(n.endswith("recipes/smoke.yaml") for n in archive.namelist())
    requirements = (wheels / "unsloth-requirements.txt").read_text().split()
    assert "tyro" in requirements and not [r for r in requirements if r.startswith(("torch", "xformers"))]
    again = collect(wheels, "--cuda", "--python-version", "3.11")
    assert again.returncode == 2 and "another target" in again.stderr
