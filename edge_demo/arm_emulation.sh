#!/usr/bin/env bash
# The aarch64 check: a Debian 12 arm64 chroot under qemu user-mode emulation, the aarch64 wheels of
# numpy / onnxruntime / soundfile / soxr from PyPI, speechmpq's torch-free runtime copied in, two clips
# transcribed with models/demo-mpq.onnx on two emulated CPUs, compared with the x86 host.
#
#   sudo bash edge_demo/arm_emulation.sh [--root DIR] [--out results/arm] [--model models/demo-mpq.onnx]
#
# Needs root (debootstrap, chroot, binfmt_misc), qemu-user-static and debootstrap (installed with
# apt-get when missing), and a Python with the project installed for the x86 reference (PYTHON, default
# .venv/bin/python). The chroot (~0.5 GB) is kept in DIR and reused; the first build takes about
# 4 minutes here. Writes OUT.md / OUT.json; exits non-zero when a transcript differs from x86 or a
# logit is out of tolerance.
#
# Traps (found when this was first tried): /proc and /sys are NOT mounted in the chroot (onnxruntime
# would read the host's x86 CPU description and crash); QEMU_CPU picks the emulated CPU, and results
# depend on it: neoverse-n1 (dotprod) and cortex-a72 (no dotprod) are both run.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=/var/tmp/speechmpq-arm64
OUT=results/arm
MODEL=models/demo-mpq.onnx
PYTHON=${PYTHON:-.venv/bin/python}
CPUS="neoverse-n1 cortex-a72"
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
while [ $# -gt 0 ]; do
    case "$1" in
        --root) ROOT=$2; shift 2 ;;
        --out) OUT=$2; shift 2 ;;
        --model) MODEL=$2; shift 2 ;;
        --cpus) CPUS=$2; shift 2 ;;
        -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
        *) echo "error: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done
step() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
[ "$(id -u)" = 0 ] || { echo "error: needs root (debootstrap, chroot, binfmt_misc)" >&2; exit 2; }
[ -f "$MODEL" ] || { echo "error: $MODEL: no such model" >&2; exit 2; }
[ -x "$PYTHON" ] || { echo "error: $PYTHON: no Python with speechmpq installed (set PYTHON)" >&2; exit 2; }
if ! command -v qemu-aarch64-static >/dev/null || ! command -v debootstrap >/dev/null; then
    step "installing qemu-user-static and debootstrap"
    apt-get update -q >/dev/null && apt-get install -y -q qemu-user-static debootstrap >/dev/null
fi

# binfmt_misc: arm64 ELF files run through qemu-aarch64-static ("F": the interpreter is opened now,
# so the chroot does not need its own copy; one is copied in anyway for debootstrap).
if [ ! -e /proc/sys/fs/binfmt_misc/register ]; then
    mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
fi
if [ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]; then
    step "registering qemu-aarch64 with binfmt_misc"
    grep -v '^#' /usr/lib/binfmt.d/qemu-aarch64.conf > /proc/sys/fs/binfmt_misc/register
fi

if [ ! -e "$ROOT/.speechmpq-base" ]; then
    step "debootstrap: Debian 12 arm64 (minbase + python3) into $ROOT"
    rm -rf "$ROOT"
    debootstrap --arch=arm64 --foreign --variant=minbase --include=python3,python3-venv \
        bookworm "$ROOT" "$MIRROR" >/dev/null
    cp /usr/bin/qemu-aarch64-static "$ROOT/usr/bin/"
    step "debootstrap second stage (emulated)"
    chroot "$ROOT" /debootstrap/debootstrap --second-stage >/dev/null
    touch "$ROOT/.speechmpq-base"
fi

# aarch64 wheels, fetched on the host (pip there knows the index), installed offline in the chroot
WHEELS="$ROOT/opt/wheels"
if [ ! -e "$ROOT/opt/venv/.speechmpq-wheels-2" ]; then
    step "downloading aarch64 wheels (numpy, onnxruntime, onnx, soundfile, soxr)"
    mkdir -p "$WHEELS"
    "$PYTHON" -m pip download --quiet --only-binary=:all: --implementation cp --python-version 3.11 \
        --abi cp311 --platform manylinux_2_28_aarch64 --platform manylinux2014_aarch64 \
        -d "$WHEELS" "onnxruntime>=1.32" "onnx>=1.17" numpy soundfile soxr 2>/dev/null
    step "installing them into the chroot's venv (emulated)"
    chroot "$ROOT" /usr/bin/python3 -m venv /opt/venv
    chroot "$ROOT" /opt/venv/bin/python -m pip install --quiet --no-index --find-links /opt/wheels \
        onnxruntime onnx numpy soundfile soxr
    touch "$ROOT/opt/venv/.speechmpq-wheels-2"
fi

# the torch-free runtime: speechmpq's shared modules + speechmpq.runtime + speechmpq.edge_demo
step "copying speechmpq.runtime, the model and the clips into the chroot"
PKG="$ROOT/opt/speechmpq/speechmpq"
rm -rf "$ROOT/opt/speechmpq" "$ROOT/opt/work"
mkdir -p "$PKG/runtime" "$PKG/edge_demo" "$ROOT/opt/work"
cp speechmpq/*.py speechmpq/*.json "$PKG/"
cp runtime/*.py "$PKG/runtime/"
cp edge_demo/*.py "$PKG/edge_demo/"
cp "$MODEL" "$ROOT/opt/work/model.onnx"
# a small word LM from the clips' transcripts: the LM decoder's code path on arm64 (the demo's 11 MB
# LM takes many minutes to load under emulation), the same file for the x86 reference
"$PYTHON" -m speechmpq lm --text edge_demo/clips --order 3 --out "$ROOT/opt/work/lm.arpa" >/dev/null
cp edge_demo/clips/*.flac "$ROOT/opt/work/"
if chroot "$ROOT" /opt/venv/bin/python -c "import torch" 2>/dev/null; then
    echo "error: torch is importable in the chroot; the check must run without it" >&2; exit 1
fi

RUNS=$(mktemp -d)
trap 'rm -rf "$RUNS"' EXIT
step "x86_64 reference (native)"
"$PYTHON" -m speechmpq.edge_demo.arm_check run --model "$MODEL" --clips edge_demo/clips/*.flac \
    --lm "$ROOT/opt/work/lm.arpa" --out "$RUNS/x86_64"
NAMES=()
for cpu in $CPUS; do
    step "arm64 QEMU_CPU=$cpu (emulated; no /proc, no /sys)"
    env -i PATH=/usr/local/bin:/usr/bin:/bin HOME=/root QEMU_CPU="$cpu" PYTHONPATH=/opt/speechmpq \
        "$(command -v chroot)" "$ROOT" /opt/venv/bin/python -m speechmpq.edge_demo.arm_check run \
        --model /opt/work/model.onnx --clips /opt/work/clip1.flac /opt/work/clip2.flac \
        --lm /opt/work/lm.arpa --out "/opt/work/$cpu"
    cp -r "$ROOT/opt/work/$cpu" "$RUNS/$cpu"
    NAMES+=("$RUNS/$cpu")
done
step "comparing with x86"
"$PYTHON" -m speechmpq.edge_demo.arm_check compare --reference "$RUNS/x86_64" --runs "${NAMES[@]}" \
    --out "$OUT" --command "bash edge_demo/arm_emulation.sh --model $MODEL --out $OUT"
step "wrote $OUT.md and $OUT.json"
