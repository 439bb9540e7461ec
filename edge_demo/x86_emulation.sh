#!/usr/bin/env bash
# The x86-64-without-VNNI check: the same wheels and venv run under qemu user-mode emulation of a
# Haswell CPU (AVX2 and FMA; no AVX-512, no VNNI: the int8 kernels of most laptops before Ice Lake and
# of AMD Zen 1-3), compared with this machine run natively.
#
#   bash edge_demo/x86_emulation.sh [--out results/x86_haswell] [--model models/demo-mpq.onnx]
#
# For the committed model and a model with full-range 8-bit layers (models/demo with the plan
# results/plans/demo-ffn8-attn2.bitplan.json: every FFN matrix at 8 bits, attention at 2), each at
# MatMulNBits accuracy levels 0 and 4: the runtime chooses each layer's kernel for the CPU it loads
# on; transcripts must equal native x86 at level 0 and follow the rule of edge_demo/arm_check.py
# above it. Then the negative control: the 8-bit model with its kernels chosen for a VNNI CPU (what
# an export that chose kernels for the exporting CPU shipped), run as stored; it must FAIL.
# Writes OUT.md/.json (one section per model) and OUT_control.md/.json; exits non-zero when a check
# that must pass fails or the control passes. Needs qemu-user (apt-get install qemu-user when root),
# and a Python with the project and its train extra installed (PYTHON, default .venv/bin/python).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=results/x86_haswell
MODEL=models/demo-mpq.onnx
PYTHON=${PYTHON:-.venv/bin/python}
CPU=Haswell
while [ $# -gt 0 ]; do
    case "$1" in
        --out) OUT=$2; shift 2 ;;
        --model) MODEL=$2; shift 2 ;;
        -h|--help) sed -n '2,19p' "$0"; exit 0 ;;
        *) echo "error: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done
step() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
[ -f "$MODEL" ] || { echo "error: $MODEL: no such model" >&2; exit 2; }
[ -x "$PYTHON" ] || { echo "error: $PYTHON: no Python with speechmpq installed (set PYTHON)" >&2; exit 2; }
if ! command -v qemu-x86_64 >/dev/null; then
    [ "$(id -u)" = 0 ] || { echo "error: qemu-x86_64 missing (apt-get install qemu-user)" >&2; exit 2; }
    step "installing qemu-user"
    apt-get update -q >/dev/null && apt-get install -y -q qemu-user >/dev/null
fi
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
# the kernel cache of this check only: a rewrite made natively must not be reused under emulation
export SPEECHMPQ_CACHE="$WORK/cache"
emulated() { QEMU_CPU=$CPU qemu-x86_64 "$PYTHON" "$@" 2> >(grep -v "TCG doesn't support" >&2); }

step "the 8-bit model: models/demo + results/plans/demo-ffn8-attn2.bitplan.json"
"$PYTHON" -m speechmpq export models/demo --plan results/plans/demo-ffn8-attn2.bitplan.json \
    --out "$WORK/demo-ffn8.onnx" --quiet
CLIPS=(edge_demo/clips/*.flac)
"$PYTHON" -m speechmpq lm --text edge_demo/clips --order 3 --out "$WORK/lm.arpa" >/dev/null
status=0
REPORTS=()
for model in "$MODEL" "$WORK/demo-ffn8.onnx"; do
    name=$(basename "$model" .onnx)
    step "$name: native x86_64 (reference)"
    "$PYTHON" -m speechmpq.edge_demo.arm_check run --model "$model" --clips "${CLIPS[@]}" \
        --lm "$WORK/lm.arpa" --out "$WORK/$name/native"
    step "$name: emulated $CPU"
    emulated -m speechmpq.edge_demo.arm_check run --model "$model" --clips "${CLIPS[@]}" \
        --lm "$WORK/lm.arpa" --out "$WORK/$name/$CPU"
    "$PYTHON" -m speechmpq.edge_demo.arm_check compare --reference "$WORK/$name/native" \
        --runs "$WORK/$name/$CPU" --kind x86 --out "$WORK/$name/report" \
        --command "bash edge_demo/x86_emulation.sh --model $MODEL --out $OUT" || status=1
    REPORTS+=("$WORK/$name/report")
done

step "negative control: demo-ffn8 with kernels chosen for a VNNI CPU, run as stored"
"$PYTHON" -m speechmpq.edge_demo.arm_check bake --model "$WORK/demo-ffn8.onnx" --isa avx2 avx512f avx512_vnni \
    --accuracy-level 4 --out "$WORK/baked-for-vnni.onnx"
"$PYTHON" -m speechmpq.edge_demo.arm_check run --model "$WORK/baked-for-vnni.onnx" --clips "${CLIPS[@]}" \
    --kernels nbits --out "$WORK/control/native"
emulated -m speechmpq.edge_demo.arm_check run --model "$WORK/baked-for-vnni.onnx" --clips "${CLIPS[@]}" \
    --kernels nbits --out "$WORK/control/$CPU"
"$PYTHON" -m speechmpq.edge_demo.arm_check compare --reference "$WORK/control/native" \
    --runs "$WORK/control/$CPU" --kind x86-control --expect-fail --out "${OUT}_control" \
    --command "bash edge_demo/x86_emulation.sh --model $MODEL --out $OUT" || status=1

"$PYTHON" - "$OUT" "${REPORTS[@]}" <<'PY'
import json, sys
from pathlib import Path
out, reports = Path(sys.argv[1]), [Path(p) for p in sys.argv[2:]]
texts = [Path(f"{r}.md").read_text() for r in reports]
summaries = [json.loads(Path(f"{r}.json").read_text()) for r in reports]
from speechmpq.files import atomic_write
atomic_write(out.with_name(out.name + ".md"), "\n\n".join(texts))
atomic_write(out.with_name(out.name + ".json"), json.dumps(
    {"passed": all(s["passed"] for s in summaries), "models": summaries}, indent=2) + "\n")
PY
step "wrote $OUT.md, ${OUT}_control.md"
exit $status
