#!/usr/bin/env bash
# Installs llama-cpp-python into a virtual environment from a wheel built with our flags, kept in a cache of
# our own outside the clone. Usage: scripts/install_llama_cpp.sh PYTHON [portable|native] [--wheel-only]
# (--wheel-only: build the wheel if the cache lacks it, print its path, install nothing; collect_wheels.sh uses it)
#
# Why a cache of our own: pip's wheel cache is keyed by the source archive, not by CMAKE_ARGS, so a wheel built
# elsewhere with other flags (-march=native, AVX-512) would be reused silently. Ours is keyed by the version,
# the machine architecture and the flags, and pip's own cache is bypassed when building.
#
# Why these flags ("portable", the default): the registry has no wheel, so the library is compiled here, and it
# must run on every CPU the environment may meet, not only on this one. On x86-64 the baseline is x86-64-v3's
# vector set (SSE4.2, AVX, AVX2, FMA, F16C, BMI2: every Intel CPU since Haswell, 2013, every AMD CPU since
# Excavator, 2015), with AVX-512 and AMX off: a native build died with "Illegal instruction" where a CPU
# reported AMX that the sandbox refused, and an AVX-512 build died on an AMD EPYC without AVX-512.
# llama.cpp's runtime dispatch (GGML_BACKEND_DL + GGML_CPU_ALL_VARIANTS) was not chosen: llama-cpp-python
# 0.3.36 installs only the target named ggml-cpu (not ggml-cpu-haswell, ggml-cpu-skylakex, ...), ggml looks
# for the variants beside the executable (python's bin folder), and ggml scores the AMX variant from cpuid
# alone, so it would pick AMX where the OS refuses it. Elsewhere (aarch64) GGML_NATIVE=OFF leaves the
# compiler's baseline (armv8-a) and no x86 flag is passed.
# "native" (make install LLAMA_CPU=native) builds for this machine's CPU only: faster on AVX-512 machines,
# never the default, and its cache folder is named for this CPU so no other machine picks it up.
set -euo pipefail

py=${1:?usage: install_llama_cpp.sh PYTHON [portable|native] [--wheel-only]}
cpu=${2:-portable}
wheel_only=${3:-}
version=0.3.36
arch=$(uname -m)


common="-DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_SERVER=OFF"
common="$common -DLLAVA_BUILD=OFF -DGGML_BACKEND_DL=OFF -DGGML_CPU_ALL_VARIANTS=OFF"
case "$cpu:$arch" in
  portable:x86_64)
    flags="-DGGML_NATIVE=OFF -DGGML_SSE42=ON -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON"
    flags="$flags -DGGML_BMI2=ON -DGGML_AVX_VNNI=OFF -DGGML_AVX512=OFF -DGGML_AVX512_VBMI=OFF"
    flags="$flags -DGGML_AVX512_VNNI=OFF -DGGML_AVX512_BF16=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF"
    flags="$flags -DGGML_AMX_BF16=OFF"
    label="portable x86-64 (AVX2, FMA, F16C, BMI2; no AVX-512, no AMX)" ;;
  portable:*)
    flags="-DGGML_NATIVE=OFF"
    label="portable $arch (the compiler's baseline)" ;;
  native:*)
    flags="-DGGML_NATIVE=ON"
    label="native: for this CPU only ($(grep -m1 'model name' /proc/cpuinfo 2>/dev/null | cut -d: -f2- | xargs))" ;;
  *)
    echo "install_llama_cpp.sh: LLAMA_CPU must be portable or native, not '$cpu'" >&2
    exit 2 ;;
esac
cmake_args="$flags $common"

key=$(printf '%s' "$cmake_args" | sha256sum | cut -c1-12)
if [ "$cpu" = native ]; then
  key="$key-$( (grep -m1 'model name' /proc/cpuinfo; grep -m1 '^flags' /proc/cpuinfo) 2>/dev/null | sha256sum | cut -c1-8)"
fi
cache=${XDG_CACHE_HOME:-$HOME/.cache}/mcq-unsloth
dir="$cache/wheels/llama-cpp-python-$version-$arch-$cpu-$key"

if ! ls "$dir"/llama_cpp_python-"$version"-*.whl >/dev/null 2>&1; then
  echo >&2 "building llama-cpp-python $version, $label (5 to 15 minutes on 2 cores, once per machine) into $dir"
  mkdir -p "$cache/wheels"
  tmp=$(mktemp -d "$cache/wheels/.build-XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  start=$(date +%s)
  CMAKE_ARGS="$cmake_args" "$py" -m pip --disable-pip-version-check wheel -q --no-deps --no-cache-dir \
    --no-binary llama-cpp-python -w "$tmp" "llama-cpp-python==$version" >&2
  printf '%s\n' "$cmake_args" >"$tmp/CMAKE_ARGS"
  if [ "$cpu:$arch" = portable:x86_64 ] && command -v objdump >/dev/null; then
    # The point of the build: no AVX-512 (zmm) and no AMX (tmm) instruction in the CPU library.
    "$py" -c 'import sys, zipfile; z = zipfile.ZipFile(sys.argv[1]); n = [f for f in z.namelist() if "libggml-cpu" in f][0]; open(sys.argv[2], "wb").write(z.read(n))' "$tmp"/*.whl "$tmp/libggml-cpu.so"
    beyond=$(objdump -d --no-show-raw-insn "$tmp/libggml-cpu.so" | grep -cE '%(zmm|tmm)[0-9]' || true)
    rm -f "$tmp/libggml-cpu.so"
    if [ "$beyond" -gt 0 ]; then
      echo "install_llama_cpp.sh: the build holds $beyond AVX-512/AMX instructions; CMAKE_ARGS were not applied" >&2
      exit 1
    fi
  fi
  mv -T "$tmp" "$dir" 2>/dev/null || rm -rf "$tmp"  # another install may have finished the same build first
  trap - EXIT
  echo >&2 "built in $(( $(date +%s) - start )) s"
fi
wheel=$(ls "$dir"/llama_cpp_python-"$version"-*.whl | head -n 1)
if [ "$wheel_only" = --wheel-only ]; then
  echo "$wheel"
  exit 0
fi

# The first install brings llama-cpp-python's dependencies; the second makes sure the installed library is
# this wheel even when the same version, built with other flags, was installed before.
"$py" -m pip --disable-pip-version-check install -q "$wheel"
"$py" -m pip --disable-pip-version-check install -q --no-deps --force-reinstall "$wheel"
echo "installed llama-cpp-python $version, $label, from $wheel"
"$py" -c 'import llama_cpp; print("llama.cpp system info:", llama_cpp.llama_print_system_info().decode().strip())'
