#!/usr/bin/env bash
# Collects every wheel an offline install of mcq-unsloth needs into one folder, for a machine without a
# registry (a Kaggle notebook with internet off): upload the folder as a dataset, then install from it with
# `pip install --no-index --find-links FOLDER` as OUT/INSTALL.md says. docs/kaggle.md has the whole story.
#
#   scripts/collect_wheels.sh OUT                  this machine: CPU torch 2.13.0, this Python, x86-64 Linux
#   scripts/collect_wheels.sh OUT --cuda [--python-version 3.12] [--glibc 2.35] [--torch 2.11.0]
#                                                  a CUDA notebook image that has its own torch
#
# --cuda leaves out torch and what is built against one torch (torchvision, triton, xformers, torchao): the
# image's CUDA builds are the ones to use; a registry torch would be GBs of CUDA packages, and the wrong build.
# The resolver is told the image has them (wheels holding only a name and a version, in a temporary folder),
# so everything else is resolved for the target: its Python, glibc and x86-64. It also adds the Unsloth pair's
# own requirements (a CPU install takes the pair with --no-deps; on a GPU, Unsloth imports more). Defaults: the
# image of the GPU machine this project is lent (Python 3.12, torch 2.11, CUDA); for Kaggle pass what its
# notebook says (`!python --version`, `!python -c "import torch; print(torch.__version__)"`, `!ldd --version`).
#
# llama-cpp-python goes in as the wheel scripts/install_llama_cpp.sh builds (portable, from our cache: no source
# build in the notebook). It is tagged py3-none-linux_x86_64 (ctypes, any Python 3); its libraries need the
# glibc and libstdc++ versions INSTALL.md names, which the script reads from the wheel.
set -euo pipefail

usage="usage: collect_wheels.sh OUT [--cuda] [--python-version X.Y] [--glibc X.Y] [--torch VERSION]"
out=$(realpath -ms "${1:?$usage}")  # relative to where it was called from, before the cd below
shift
cuda=false pyver=3.12 glibc=2.35 torch_version=2.11.0
while [ $# -gt 0 ]; do
  case "$1" in
    --cuda) cuda=true ;;
    --python-version) pyver=${2:?$usage}; shift ;;
    --glibc) glibc=${2:?$usage}; shift ;;
    --torch) torch_version=${2:?$usage}; shift ;;
    *) echo "collect_wheels.sh: unknown option '$1'; $usage" >&2; exit 2 ;;
  esac
  shift
done
py=$(realpath -ms "${PYTHON:-$(dirname "$0")/../.venv/bin/python}")
cd "$(dirname "$0")/.."
[ -x "$py" ] || { echo "collect_wheels.sh: $py not found: run make install first (or set PYTHON=)" >&2; exit 2; }
pip=("$py" -m pip --disable-pip-version-check)
[ "$(uname -m)" = x86_64 ] || { echo "collect_wheels.sh: targets x86-64 Linux; this is $(uname -m)" >&2; exit 2; }

# Nothing overwritten without asking: OUT is new, empty, or a folder this script wrote for the same target
# (collected again, e.g. after an upgrade).
key="cuda=$cuda python=$pyver glibc=$glibc torch=$torch_version"
[ "$cuda" = true ] || key="cuda=false"
if [ -d "$out" ] && [ -n "$(ls -A "$out")" ]; then
  if [ ! -f "$out/.collected-for" ]; then
    echo "collect_wheels.sh: $out holds files this script did not write; give an empty or new folder" >&2
    exit 2
  elif [ "$(cat "$out/.collected-for")" != "$key" ]; then
    echo "collect_wheels.sh: $out was collected for another target ($(cat "$out/.collected-for")); give another folder" >&2
    exit 2
  fi
fi
mkdir -p "$out"
printf '%s\n' "$key" >"$out/.collected-for"
start=$(date +%s)

"${pip[@]}" wheel -q --no-deps -w "$out" . >&2
project=$(ls "$out"/mcq_unsloth-*.whl | head -n 1)
llama=$(bash scripts/install_llama_cpp.sh "$py" portable --wheel-only)
cp -f "$llama" "$out/"
libs=$(mktemp -d)
llama_requires=$(cd "$libs" && unzip -q "$llama" '*.so' && for f in $(find . -name '*.so'); do
  objdump -T "$f" | grep -oE 'GLIBC(XX)?_[0-9.]+'; done | sort -t_ -k1,1 -k2,2V | awk -F_ '{v[$1]=$2} END {
  printf "glibc >= %s and a libstdc++ with GLIBCXX_%s", v["GLIBC"], v["GLIBCXX"]}')
rm -rf "$libs"
unsloth=(unsloth==2026.10.9 unsloth_zoo==2026.10.9)

if [ "$cuda" = false ]; then
  # Exactly what `make install` puts in a fresh venv here: torch 2.13.0 (the CPU build), the project with its
  # dependencies, llama-cpp-python's dependencies, and the Unsloth pair (installed with --no-deps).
  "${pip[@]}" download -q --only-binary=:all: -d "$out" torch==2.13.0 "$project" "$llama"
  "${pip[@]}" download -q --no-deps -d "$out" "${unsloth[@]}"
  target="this machine (Python $("$py" -c 'import sys; print("%d.%d" % sys.version_info[:2])'), x86-64 Linux, CPU torch 2.13.0)"
  install_unsloth='pip install --no-index --find-links "$W" --no-deps unsloth==2026.10.9 unsloth_zoo==2026.10.9'
else
  platforms=()
  minor=${glibc#2.}
  for m in $(seq "$minor" -1 17); do platforms+=(--platform "manylinux_2_${m}_x86_64"); done
  platforms+=(--platform manylinux2014_x86_64 --platform manylinux2010_x86_64 --platform manylinux1_x86_64
              --platform linux_x86_64)
  target_args=(--only-binary=:all: --python-version "$pyver" --implementation cp "${platforms[@]}")
  stubs=$(mktemp -d)
  trap 'rm -rf "$stubs"' EXIT
  # What the image provides, as wheels holding only a name and a version (never copied into OUT).
  # The local label "+image" keeps the registry's builds of the same versions out; the pins make them the choice.
  "$py" - "$stubs" "torch==$torch_version" torchvision==0.0.1 triton==3.0.0 xformers==0.0.99 torchao==0.99.0 <<'EOF'
import sys, zipfile
folder, pins = sys.argv[1], sys.argv[2:]
constraints = open(f"{folder}/constraints.txt", "w")
for pin in pins:
    name, version = pin.split("==")
    version += "+image"
    print(f"{name}=={version}", file=constraints)
    info = f"{name}-{version}.dist-info"
    with zipfile.ZipFile(f"{folder}/{name}-{version}-py3-none-any.whl", "w") as wheel:
        wheel.writestr(f"{info}/METADATA", f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
        wheel.writestr(f"{info}/WHEEL", "Wheel-Version: 1.0\nGenerator: collect_wheels\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        wheel.writestr(f"{info}/RECORD", "")
EOF
  stub_names=(torch torchvision triton xformers torchao)
  # The Unsloth pair's requirements for the target, minus the torch-bound ones: installed after the pair.
  "${pip[@]}" download -q --no-deps "${target_args[@]}" -d "$out" "${unsloth[@]}"
  "$py" - "$out" "$pyver" "${stub_names[@]}" >"$out/unsloth-requirements.txt" <<'EOF'
import sys, zipfile
from pathlib import Path
from packaging.requirements import Requirement
folder, pyver, skip = Path(sys.argv[1]), sys.argv[2], set(sys.argv[3:])
env = {"python_version": pyver, "python_full_version": pyver + ".0", "sys_platform": "linux",
       "platform_system": "Linux", "platform_machine": "x86_64", "implementation_name": "cpython",
       "platform_python_implementation": "CPython", "os_name": "posix", "extra": ""}
wanted = {}
for wheel in sorted(folder.glob("unsloth*-2026.10.9-*.whl")):
    with zipfile.ZipFile(wheel) as archive:
        metadata = archive.read(next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA")))
    for line in metadata.decode().splitlines():
        if line.startswith("Requires-Dist:"):
            req = Requirement(line.split(":", 1)[1].strip())
            name = req.name.lower().replace("_", "-")
            if (req.marker is None or req.marker.evaluate(env)) and name not in skip | {"unsloth-zoo"}:
                wanted[name] = str(req).split(";")[0].strip()
print("\n".join(sorted(wanted.values())))
EOF
  "${pip[@]}" download -q "${target_args[@]}" --find-links "$stubs" -c "$stubs/constraints.txt" -d "$out" \
    "$project" "$llama" -r "$out/unsloth-requirements.txt"
  for f in "$stubs"/*.whl; do rm -f "$out/$(basename "$f")"; done
  target="a CUDA image with its own torch $torch_version (Python $pyver, glibc >= $glibc, x86-64)"
  install_unsloth='pip install --no-index --find-links "$W" --no-deps unsloth==2026.10.9 unsloth_zoo==2026.10.9
pip install --no-index --find-links "$W" -r "$W/unsloth-requirements.txt"'
fi

# The check: with the registry off and no pip configuration, this folder alone (and, for --cuda, the image's
# torch family) resolves the install INSTALL.md gives.
offline=(env PIP_CONFIG_FILE=/dev/null "$py" -m pip --disable-pip-version-check install -q --dry-run --no-index
         --find-links "$out" --ignore-installed)
if [ "$cuda" = false ]; then
  "${offline[@]}" mcq-unsloth llama-cpp-python
else
  "${offline[@]}" "${target_args[@]}" --ignore-requires-python --target "$stubs/target" --find-links "$stubs" -c "$stubs/constraints.txt" \
    mcq-unsloth llama-cpp-python "${unsloth[@]}" -r "$out/unsloth-requirements.txt"
fi

count=$(ls "$out"/*.whl | wc -l)
size=$(du -sm "$out" | cut -f1)
cat >"$out/INSTALL.md" <<EOF
# mcq-unsloth offline wheels

For $target. Collected by scripts/collect_wheels.sh on $(date -u +%Y-%m-%d): $count wheels, $size MB.
llama-cpp-python here is a portable CPU build (no AVX-512, no AMX); its libraries need $llama_requires.

Install with the registry off (W: this folder, e.g. /kaggle/input/mcq-unsloth-wheels):

    W=/path/to/this/folder
    pip install --no-index --find-links "\$W" mcq-unsloth llama-cpp-python
    $install_unsloth

Then \`mcq-unsloth demo\` runs without a network (it builds its own tiny model).
EOF
echo "collected $count wheels ($size MB) for $target into $out in $(( $(date +%s) - start )) s;"
echo "checked: they resolve the install with --no-index, from this folder alone"
echo "install: see $out/INSTALL.md"
