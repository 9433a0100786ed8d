"""Whether this machine can run the installed llama.cpp, found out before our own process calls it.

A llama.cpp library compiled for instructions the CPU lacks (AVX-512 on a CPU without it), or that the operating
system refuses (AMX reported by a CPU whose tiles a sandbox does not enable), kills the whole Python process
with "Illegal instruction" at its first computation: nothing to catch. So a short subprocess loads a tiny GGUF
model and computes with it first; if that subprocess dies, the user gets one line saying what the library was
built for, what this CPU has and how to rebuild it. A success is remembered per installed library and CPU, in
this process and in ``~/.cache/mcq-unsloth`` (``$XDG_CACHE_HOME`` if set), so the check costs about a second
once per machine and library.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import platform
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from ..errors import LlamaCppUnusable

REBUILD = "rebuild it for any CPU with `make llama-cpp` in the mcq-unsloth checkout (see the README's llama.cpp build)"
TIMEOUT_S = 120

# What llama_print_system_info calls an instruction set, and the name /proc/cpuinfo gives it.
CPU_FLAGS = {
    "SSE3": "pni", "SSSE3": "ssse3", "AVX": "avx", "AVX2": "avx2", "F16C": "f16c", "FMA": "fma", "BMI2": "bmi2",
    "AVX_VNNI": "avx_vnni", "AVX512": "avx512f", "AVX512_VBMI": "avx512vbmi", "AVX512_VNNI": "avx512_vnni",
    "AVX512_BF16": "avx512_bf16", "AMX_INT8": "amx_int8", "NEON": "asimd", "ARM_FMA": "asimd",
    "FP16_VA": "fphp", "DOTPROD": "asimddp", "MATMUL_INT8": "i8mm", "SVE": "sve", "SME": "sme",
}

# Run in the subprocess: print what the library was built for, then load the probe model and compute with it.
PROBE = """
import sys
import llama_cpp as L
print(L.llama_print_system_info().decode(errors="replace").strip(), flush=True)
L.llama_backend_init()
model = L.llama_model_load_from_file(sys.argv[1].encode(), L.llama_model_default_params())
params = L.llama_context_default_params()
params.n_ctx, params.n_batch, params.n_threads, params.n_threads_batch = 64, 64, 2, 2
context = L.llama_init_from_model(model, params)
for tokens in ([1, 2, 3, 4, 5, 6, 7, 8], [9]):
    array = (L.llama_token * len(tokens))(*tokens)
    if L.llama_decode(context, L.llama_batch_get_one(array, len(tokens))) != 0:
        sys.exit("llama_decode failed")
print("ran", flush=True)
"""

_passed: set[str] = set()


def check_llama_cpp() -> None:
    """Raise :class:`LlamaCppUnusable` unless the installed llama.cpp computes on this machine without dying.
    Does nothing when llama-cpp-python is not installed (whoever needs it says so)."""
    spec = importlib.util.find_spec("llama_cpp")
    if spec is None or spec.origin is None:
        return
    key = _key(Path(spec.origin).parent)
    remembered = _cache_dir() / f"llama-cpp-runs-{key}"
    if key in _passed or remembered.is_file():
        _passed.add(key)
        return
    with tempfile.TemporaryDirectory(prefix="mcq-unsloth-probe-") as folder:
        model = write_probe_model(Path(folder) / "probe.gguf")
        try:
            result = subprocess.run([sys.executable, "-c", PROBE, str(model)], capture_output=True, text=True,
                                    timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired:
            raise LlamaCppUnusable(f"llama.cpp ({Path(spec.origin).parent}) did not finish computing with a tiny "
                                   f"model in {TIMEOUT_S} s; is the machine overloaded? If not, {REBUILD}") from None
    if result.returncode == 0 and result.stdout.rstrip().endswith("ran"):
        _passed.add(key)
        try:
            remembered.parent.mkdir(parents=True, exist_ok=True)
            remembered.write_text(result.stdout.splitlines()[0] + "\n", encoding="utf-8")
        except OSError:
            pass  # an unwritable cache only means checking again next time
        return
    raise LlamaCppUnusable(failure_message(result.returncode, result.stdout, result.stderr,
                                           Path(spec.origin).parent))


def failure_message(returncode: int, stdout: str, stderr: str, library: Path) -> str:
    """One line on why llama.cpp could not run here, from what its probe printed and how it ended.

    >>> print(failure_message(1, "CPU : AVX2 = 1 |", "loading\\nboom\\n", Path("/lib")).split(";")[0])
    llama.cpp (/lib) failed to compute with a tiny model (exit code 1: boom)
    """
    built_for = [name for name, value in _system_info(stdout.splitlines()[0] if stdout else "").items()
                 if value and name in CPU_FLAGS]
    flags = cpu_flags()
    missing = [name for name in built_for if CPU_FLAGS[name] not in flags]
    where = f"llama.cpp ({library}) cannot run on this CPU ({cpu_model()})"
    if returncode == -signal.SIGILL:
        if missing and flags:
            has = [name for name, flag in CPU_FLAGS.items() if flag in flags]
            return (f"{where}: it was built for {', '.join(built_for)}, and this CPU lacks {', '.join(missing)} "
                    f"(it has {', '.join(has) or 'none of them'}); {REBUILD}")
        return (f"{where}: it died with 'Illegal instruction' although this CPU reports what it was built for "
                f"({', '.join(built_for) or 'unknown'}): the system refuses one of them (AMX and AVX-512 state can "
                f"be disabled by an OS or hypervisor); {REBUILD}")
    ended = f"signal {-returncode}" if returncode < 0 else f"exit code {returncode}"
    said = (stderr.strip().splitlines() or ["no message"])[-1]
    return f"llama.cpp ({library}) failed to compute with a tiny model ({ended}: {said}); {REBUILD}"


def _system_info(line: str) -> dict[str, bool]:
    """``"CPU : SSE3 = 1 | AVX512 = 0 |"`` as ``{"SSE3": True, "AVX512": False}``."""
    pairs = (part.rsplit(":", 1)[-1].split("=") for part in line.split("|") if "=" in part)
    return {name.strip(): value.strip() == "1" for name, value in pairs}


def cpu_flags() -> set[str]:
    """The instruction-set flags /proc/cpuinfo lists for the first CPU (empty where there is no such file)."""
    for line in _cpuinfo().splitlines():
        if line.startswith(("flags", "Features")):
            return set(line.split(":", 1)[1].split())
    return set()


def cpu_model() -> str:
    """The CPU's model name, as /proc/cpuinfo gives it, else what Python's platform module knows."""
    for line in _cpuinfo().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _cpuinfo() -> str:
    try:
        return Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def _key(package: Path) -> str:
    """A name for this installed llama.cpp on this CPU: its library files (names, sizes, times) and the CPU."""
    files = sorted(p for p in package.rglob("*") if p.is_file() and p.suffix in {".so", ".dylib", ".dll", ".py"})
    parts = [f"{p.relative_to(package)}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in files]
    parts += [str(package), platform.machine(), cpu_model(), " ".join(sorted(cpu_flags()))]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def _cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "mcq-unsloth"


def write_probe_model(path: Path) -> Path:
    """A tiny random Llama-architecture GGUF file (one layer, width 64, 64 tokens without a tokenizer), its
    attention in f16 and its feed-forward in q8_0, so computing with it runs llama.cpp's float and quantized
    kernels."""
    import gguf
    import numpy as np

    width, hidden, vocab = 64, 128, 64
    rng = np.random.default_rng(0)
    writer = gguf.GGUFWriter(path, "llama")
    writer.add_context_length(64)
    writer.add_embedding_length(width)
    writer.add_feed_forward_length(hidden)
    writer.add_block_count(1)
    writer.add_head_count(2)
    writer.add_head_count_kv(2)
    writer.add_layer_norm_rms_eps(1e-6)
    writer.add_rope_dimension_count(width // 2)
    writer.add_vocab_size(vocab)
    writer.add_tokenizer_model("none")
    weight = lambda *shape: (rng.standard_normal(shape) * 0.05).astype(np.float32)
    q8 = lambda array: gguf.quants.quantize(array, gguf.GGMLQuantizationType.Q8_0)
    tensors = {
        "token_embd.weight": weight(vocab, width), "output_norm.weight": np.ones(width, np.float32),
        "output.weight": weight(vocab, width), "blk.0.attn_norm.weight": np.ones(width, np.float32),
        "blk.0.ffn_norm.weight": np.ones(width, np.float32),
        **{f"blk.0.attn_{x}.weight": weight(width, width).astype(np.float16) for x in ("q", "k", "v", "output")},
    }
    for name, array in tensors.items():
        writer.add_tensor(name, array)
    for name, shape in (("ffn_gate", (hidden, width)), ("ffn_up", (hidden, width)), ("ffn_down", (width, hidden))):
        writer.add_tensor(f"blk.0.{name}.weight", q8(weight(*shape)), raw_dtype=gguf.GGMLQuantizationType.Q8_0)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
