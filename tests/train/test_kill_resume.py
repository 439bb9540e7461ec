"""train-fp and quantize survive SIGKILL: killed mid-run (between checkpoints), run again, they end
exactly where an uninterrupted run with the same seed ends (the same bit plan, the same weights)."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from speechmpq import bitplan
from speechmpq.train.models import build_model, load_model, save_model
from speechmpq.train.run_folder import read_log

pytestmark = pytest.mark.slow


def _command(kind: str, corpus: Path, model: Path, out: Path) -> list[str]:
    common = ["--out", str(out), "--batch-seconds", "16", "--workers", "0", "--log-every", "1",
              "--checkpoint-every", "3", "--quiet"]
    if kind == "train-fp":
        return ["train-fp", "--data", str(corpus / "train"), "--dev", str(corpus / "dev"), "--preset", "tiny",
                "--steps", "12", "--warmup-steps", "2", "--eval-every", "6", "--max-utterance-seconds", "16",
                *common]
    return ["quantize", "--model", str(model), "--data", str(corpus / "train"), "--target-bits", "3.0",
            "--steps", "10", "--pass2-steps", "3", *common]


def _run(argv: list[str], kill_after_step: int | None = None, log: Path | None = None) -> int:
    # one thread, the same in every run: bit-identical arithmetic whichever process does the step
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}
    code = "import sys; from speechmpq.cli import main; sys.exit(main())"
    process = subprocess.Popen([sys.executable, "-c", code, *argv, "--threads", "1"], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if kill_after_step is None:
        output = process.communicate(timeout=600)[0].decode()
        assert process.returncode == 0, output[-3000:]
        return 0
    deadline = time.monotonic() + 600
    while True:
        if sum("loss" in r and "event" not in r for r in _records(log)) >= kill_after_step:
            break
        assert process.poll() is None, process.stdout.read().decode()[-3000:]
        assert time.monotonic() < deadline
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    return process.returncode


def _records(log: Path) -> list[dict]:
    return read_log(log) if log.exists() else []  # the line being written is left out


@pytest.fixture(scope="module")
def start_model(tmp_path_factory):
    return save_model(build_model("tiny", seed=0), tmp_path_factory.mktemp("model") / "tiny")


# killed after this many logged training steps: between checkpoints (every 3 steps); for quantize
# once in the search and once in Pass 2 (which resumes from the checkpoint at the end of the search)
@pytest.mark.parametrize("kind, kill_after", [("train-fp", 5), ("quantize", 4), ("quantize", 11)])
def test_a_run_killed_with_sigkill_resumes_to_the_uninterrupted_result(kind, kill_after, tiny_corpus,
                                                                       start_model, tmp_path):
    straight, cut = tmp_path / "straight", tmp_path / "cut"
    _run(_command(kind, tiny_corpus, start_model, straight))
    code = _run(_command(kind, tiny_corpus, start_model, cut), kill_after, cut / "train_log.jsonl")
    assert code == -signal.SIGKILL
    assert not (cut / ("final" if kind == "train-fp" else "bitplan.json")).exists()
    _run(_command(kind, tiny_corpus, start_model, cut))

    events = [r.get("event") for r in _records(cut / "train_log.jsonl") if "event" in r]
    assert "resume" in events  # it did resume from a checkpoint, not start over
    assert all(json.loads(line) for line in (cut / "train_log.jsonl").read_text().splitlines())
    if kind == "quantize":
        plans = [bitplan.load(folder / "bitplan.json")["layers"] for folder in (straight, cut)]
        assert plans[0] == plans[1]
        a, b = (load_model(folder / "model").state_dict() for folder in (straight, cut))
    else:
        a, b = (load_model(folder / "final").state_dict() for folder in (straight, cut))
    assert a.keys() == b.keys()
    assert all(torch.equal(a[name], b[name]) for name in a), "weights differ after the resume"
