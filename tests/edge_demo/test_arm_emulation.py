"""The aarch64 check (edge_demo/arm_emulation.sh): slow, needs root, apt and network to Debian and PyPI.

Builds (or reuses) the Debian 12 arm64 chroot, runs the torch-free runtime there under qemu as
neoverse-n1 and cortex-a72, and requires transcripts identical to x86 and logits within the
accuracy level's tolerance. ~13 min on the 2-core CI machine from nothing.
"""

import json
import os
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from speechmpq.edge_demo import arm_check

ROOT = Path(__file__).resolve().parents[2]


def _fake_run(path: Path, offset: float, text: str = "HELLO") -> None:
    path.mkdir(parents=True)
    report = {"machine": "x", "python": "3", "onnxruntime": "1", "numpy": "2", "qemu_cpu": "", "model": "m",
              "threads": 1, "levels": {"0": {"load_seconds": 0.1, "clips": {"a.flac": {
                  "audio_seconds": 1.0, "offline_text": text, "streaming_text": text, "offline_seconds": 0.1,
                  "streaming_seconds": 0.1, "windows": 1}}}}}
    (path / "report.json").write_text(json.dumps(report))
    np.savez(path / "logits.npz", **{"0/a.flac": np.zeros((5, 3)) + offset})


def test_compare_checks_text_and_tolerance(tmp_path):
    _fake_run(tmp_path / "x86", 0.0)
    _fake_run(tmp_path / "close", 1e-5)
    _fake_run(tmp_path / "far", 1.0)
    _fake_run(tmp_path / "other-text", 0.0, "HULLO")
    assert arm_check.compare(tmp_path / "x86", [tmp_path / "close"])["passed"]
    assert not arm_check.compare(tmp_path / "x86", [tmp_path / "far"])["passed"]
    assert not arm_check.compare(tmp_path / "x86", [tmp_path / "other-text"])["passed"]
    summary = arm_check.compare(tmp_path / "x86", [tmp_path / "close", tmp_path / "far"])
    text = arm_check.markdown(summary, "cmd")
    assert "FAIL" in text and "emulation" in text and "1.00e+00" in text


def _fake_levels(path: Path, texts: dict[str, str], offsets: dict[str, float]) -> None:
    path.mkdir(parents=True)
    clip = {"audio_seconds": 1.0, "offline_seconds": 0.1, "streaming_seconds": 0.1, "windows": 1}
    levels = {level: {"load_seconds": 0.1, "clips": {"a.flac": {**clip, "offline_text": "HELLO",
                                                                "streaming_text": text}}}
              for level, text in texts.items()}
    report = {"machine": "x", "python": "3", "onnxruntime": "1", "numpy": "2", "qemu_cpu": "", "model": "m",
              "threads": 1, "levels": levels}
    (path / "report.json").write_text(json.dumps(report))
    np.savez(path / "logits.npz", **{f"{level}/a.flac": np.zeros((5, 3)) + offset
                                     for level, offset in offsets.items()})


def test_above_level_0_a_near_tie_may_fall_to_the_exact_transcript(tmp_path):
    # x86's int8 activations (level 4) flip one letter of the exact (level 0) streaming transcript
    _fake_levels(tmp_path / "x86", {"0": "GROSUR", "4": "GROSER"}, {"0": 0.0, "4": 0.1})
    _fake_levels(tmp_path / "exact", {"0": "GROSUR", "4": "GROSUR"}, {"0": 0.0, "4": 0.0})
    _fake_levels(tmp_path / "as-x86", {"0": "GROSUR", "4": "GROSER"}, {"0": 0.0, "4": 0.15})
    _fake_levels(tmp_path / "third", {"0": "GROSUR", "4": "GROSAR"}, {"0": 0.0, "4": 0.1})
    _fake_levels(tmp_path / "level0-off", {"0": "GROSER", "4": "GROSER"}, {"0": 0.0, "4": 0.1})
    assert arm_check.compare(tmp_path / "x86", [tmp_path / "exact", tmp_path / "as-x86"])["passed"]
    assert not arm_check.compare(tmp_path / "x86", [tmp_path / "third"])["passed"]
    assert not arm_check.compare(tmp_path / "x86", [tmp_path / "level0-off"])["passed"]  # level 0: exact only


@pytest.mark.slow
@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("apt-get"), reason="needs root and apt-get")
def test_arm64_transcripts_match_x86(tmp_path):
    binfmt = Path("/proc/sys/fs/binfmt_misc")
    if not (binfmt / "register").exists() and subprocess.run(
            ["mount", "-t", "binfmt_misc", "binfmt_misc", str(binfmt)], capture_output=True).returncode:
        pytest.skip("binfmt_misc cannot be mounted here (qemu user-mode emulation needs it)")
    chroot = os.environ.get("SPEECHMPQ_ARM_ROOT")  # set it to reuse a chroot between runs
    if chroot is None or not Path(chroot, ".speechmpq-base").exists():
        try:  # building one needs the Debian mirror
            urllib.request.urlopen("http://deb.debian.org/debian/dists/bookworm/Release", timeout=20).close()
        except OSError as error:
            pytest.skip(f"the Debian mirror is not reachable ({error}); the chroot cannot be built")
    keep = chroot is not None
    chroot = chroot or str(tmp_path / "chroot")
    env = {**os.environ, "PYTHON": sys.executable}
    # the committed model, and one with full-range 8-bit layers (where x86 without VNNI must differ)
    eight_bit = tmp_path / "demo-ffn8.onnx"
    subprocess.run([sys.executable, "-m", "speechmpq", "export", str(ROOT / "models" / "demo"), "--plan",
                    str(ROOT / "results" / "plans" / "demo-ffn8-attn2.bitplan.json"), "--out", str(eight_bit),
                    "--quiet"], check=True, cwd=ROOT)
    runs = {}
    for name, model in (("arm", ROOT / "models" / "demo-mpq.onnx"), ("arm_ffn8", eight_bit)):
        completed = subprocess.run(["bash", str(ROOT / "edge_demo" / "arm_emulation.sh"), "--out",
                                    str(tmp_path / name), "--root", chroot, "--model", str(model)],
                                   cwd=ROOT, env=env, capture_output=True, text=True, timeout=3600)
        runs[name] = completed
    if not keep:
        shutil.rmtree(chroot, ignore_errors=True)  # ~0.5 GB
    for name, completed in runs.items():
        assert completed.returncode == 0, completed.stderr[-3000:]
        summary = json.loads((tmp_path / f"{name}.json").read_text())
        assert summary["passed"] and {run["name"] for run in summary["runs"]} == {"neoverse-n1", "cortex-a72"}
        for run in summary["runs"]:  # every arm64 CPU recorded the kernels its runtime chose
            assert all("kernels (" in level["kernels"] for level in run["report"]["levels"].values())
