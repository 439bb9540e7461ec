"""The x86-64-without-VNNI check (edge_demo/x86_emulation.sh): slow, needs qemu-user (installed with
apt-get when root).

The committed model and a model with full-range 8-bit layers run natively and under
``qemu-x86_64`` as a Haswell CPU (AVX2, no AVX-512, no VNNI): transcripts must match, and at
accuracy level 4 the 8-bit layers must run as int8-dynamic natively (VNNI) but not on Haswell. The
negative control (the 8-bit model baked for VNNI, run as stored on Haswell) must fail: the check can
fail. About 10 minutes on 2 cores.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.skipif(not shutil.which("qemu-x86_64") and (os.geteuid() != 0 or not shutil.which("apt-get")),
                    reason="needs qemu-user (qemu-x86_64), or root and apt-get to install it")
def test_x86_without_vnni_matches_native_and_the_baked_file_would_not(tmp_path):
    from speechmpq.runtime.cpu_facts import detect_cpu

    out = tmp_path / "x86"
    completed = subprocess.run(["bash", str(ROOT / "edge_demo" / "x86_emulation.sh"), "--out", str(out)],
                               cwd=ROOT, env={**os.environ, "PYTHON": sys.executable}, capture_output=True,
                               text=True, timeout=3600)
    assert completed.returncode == 0, completed.stderr[-3000:]
    summary = json.loads(out.with_suffix(".json").read_text())
    assert summary["passed"] and len(summary["models"]) == 2
    eight_bit = summary["models"][1]
    emulated = eight_bit["runs"][0]["report"]["levels"]["4"]
    assert emulated["cpu"] == ["avx2"] and "int8-dynamic" not in emulated["kernel_counts"]
    assert emulated["kernel_counts"].get("nbits8-block256")  # the full-range 8-bit layers
    if "avx512_vnni" in detect_cpu().isa:  # natively the same layers take the int8 kernel
        assert eight_bit["reference"]["levels"]["4"]["kernel_counts"].get("int8-dynamic")
    control = json.loads(Path(f"{out}_control.json").read_text())
    assert not control["passed"]  # run as stored without VNNI, the baked file computes wrong logits
