"""Run every system of the mixed-precision results table: FP32, uniform, two-stage, one-stage.

    python experiments/mpq_demo.py --model models/demo --corpus data/synth \\
        --out runs/mpq --steps 200 --pass2-steps 40 --lanes 1

Each system is one ``speechmpq quantize`` run folder under ``--out`` followed by ``speechmpq eval``
on dev, test-clean and test-other. Systems already done are skipped, so the command resumes; runs
are spread over ``--lanes`` processes at a time (compression times are then measured under that
load, which is the same for every system). The Pass-2 variants continue the matching one-stage run
(search, then Pass 2), so their compression time includes the search. Then build the table with
``python experiments/mpq_demo_report.py``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from speechmpq.files import atomic_output, atomic_write

SPLITS = ("dev", "test-clean", "test-other")
UNIFORM_BITS = (8, 4, 3, 2)
TWO_STAGE_TARGETS = (4.0, 3.5, 3.0)
ONE_STAGE_TARGETS = (4.0, 3.5, 3.0, 2.5)


@dataclass
class System:
    name: str
    args: list[str] = field(default_factory=list)  # speechmpq quantize flags (None for fp32)
    after: str | None = None  # run folder this one continues (Pass 2)
    quantized: bool = True


def systems() -> list[System]:
    table = [System("fp32", quantized=False)]
    table += [System(f"uniform-{b}", ["--method", "uniform", "--bits", str(b)]) for b in UNIFORM_BITS]
    for search in ("nas", "kl"):
        table += [System(f"two-stage-{search}-{t}", ["--method", "two-stage", "--search", search,
                                                      "--target-bits", str(t)])
                  for t in TWO_STAGE_TARGETS]
    table += [System(f"one-stage-{t}", ["--method", "one-stage", "--target-bits", str(t)])
              for t in ONE_STAGE_TARGETS]
    table += [System(f"one-stage-{t}-pass2", ["--method", "one-stage", "--target-bits", str(t)],
                     after=f"one-stage-{t}") for t in ONE_STAGE_TARGETS]
    # Per-output-channel step sizes instead of the paper's per-tensor ones, at one point each.
    per_channel = ["--granularity", "per-channel"]
    table += [System("uniform-3-per-channel", ["--method", "uniform", "--bits", "3", *per_channel]),
              System("one-stage-3.0-per-channel", ["--method", "one-stage", "--target-bits", "3.0",
                                                   *per_channel])]
    return table


def _done(folder: Path, quantized: bool) -> bool:
    ready = (folder / "summary.json").is_file() or not quantized
    return ready and all((folder / "eval" / s / "summary.json").is_file() for s in SPLITS)


def run_system(system: System, cfg: argparse.Namespace, log) -> None:
    folder = cfg.out / system.name
    if _done(folder, system.quantized):
        log(f"{system.name}: done already")
        return
    folder.mkdir(parents=True, exist_ok=True)
    python = [sys.executable, "-m", "speechmpq"]
    model_dir = cfg.model
    if system.quantized:
        if system.after and not (folder / "checkpoint.pt").exists():
            source = cfg.out / system.after
            for name in ("train_log.jsonl", "checkpoint.pt"):  # the checkpoint last, whole or not at all
                with atomic_output(folder / name) as tmp:
                    shutil.copy2(source / name, tmp)
        steps = ["--steps", str(cfg.steps)] + (
            ["--pass2-steps", str(cfg.pass2_steps)] if system.after else [])
        command = python + ["quantize", "--model", str(cfg.model), "--data", str(cfg.corpus / "train"),
                            "--out", str(folder), *system.args, *steps, "--batch-seconds",
                            str(cfg.batch_seconds), "--device", cfg.device, "--workers",
                            str(cfg.workers), "--seed", str(cfg.seed), "--quiet", *cfg.extra]
        _call(command, folder / "quantize.out", log, system.name)
        model_dir = folder / "model"
    if not _done(folder, system.quantized):
        _call(python[:2] + ["mpq_demo", "eval-splits", str(model_dir),
                            str(cfg.corpus), str(folder / "eval"), cfg.eval_device],
              folder / "eval.out", log, f"{system.name} eval")
    log(f"{system.name}: finished")


def _call(command: list[str], output: Path, log, label: str) -> None:
    started = time.time()
    with open(output, "a") as handle:
        result = subprocess.run(command, stdout=handle, stderr=subprocess.STDOUT)
    if result.returncode != 0:
        tail = output.read_text().strip().splitlines()[-1:] or ["(no output)"]
        raise RuntimeError(f"{label} failed (exit {result.returncode}): {tail[0]}")
    log(f"{label}: {time.time() - started:.0f} s")


def eval_splits(model_dir: Path, corpus: Path, out: Path, device: str) -> None:
    """Evaluate one model on every split in one process (the model is loaded once per split)."""
    from speechmpq.jobs.evaluation import evaluate

    for split in SPLITS:
        if not (out / split / "summary.json").is_file():
            evaluate(model_dir, corpus / split, out=out / split, progress=False, device=device)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["eval-splits"]:
        eval_splits(Path(argv[1]), Path(argv[2]), Path(argv[3]), argv[4])
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=Path("models/demo"))
    parser.add_argument("--corpus", type=Path, default=Path("data/synth"))
    parser.add_argument("--out", type=Path, default=Path("runs/mpq"))
    parser.add_argument("--steps", type=int, default=200, help="steps of every training stage")
    parser.add_argument("--pass2-steps", type=int, default=40)
    parser.add_argument("--batch-seconds", type=float, default=32.0)
    parser.add_argument("--device", default="auto", help="training device")
    parser.add_argument("--eval-device", default="cpu")
    parser.add_argument("--workers", type=int, default=-1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--lanes", type=int, default=1, help="systems run at the same time")
    parser.add_argument("--only", nargs="+", default=None, help="run only these systems")
    parser.add_argument("--extra", nargs=argparse.REMAINDER, default=[],
                        help="further speechmpq quantize flags for every run (last)")
    cfg = parser.parse_args(argv)
    cfg.out.mkdir(parents=True, exist_ok=True)
    atomic_write(cfg.out / "experiment.json", json.dumps(
        {k: str(v) if isinstance(v, Path) else v for k, v in vars(cfg).items()}, indent=1) + "\n")
    todo = [s for s in systems() if cfg.only is None or s.name in cfg.only]
    lock = threading.Lock()
    failures: list[str] = []
    finished: set[str] = set()
    # Longest first; a Pass-2 run waits for its search run.
    pending = (sorted(todo, key=lambda s: cfg.only.index(s.name)) if cfg.only else
               sorted(todo, key=lambda s: (s.after is not None, not s.name.startswith("two-stage-nas"))))

    def log(message: str) -> None:
        with lock:
            print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)
            with open(cfg.out / "experiments.log", "a") as handle:
                handle.write(f"{time.time():.0f} {message}\n")

    def lane() -> None:
        while True:
            with lock:
                ready = [s for s in pending if s.after is None or s.after in finished
                         or s.after not in {t.name for t in todo}]
                if not ready:
                    if not pending:
                        return
                    system = None
                else:
                    system = ready[0]
                    pending.remove(system)
            if system is None:
                time.sleep(1)
                if all(s.after in failures for s in pending):
                    return
                continue
            try:
                run_system(system, cfg, log)
                with lock:
                    finished.add(system.name)
            except Exception as error:  # one failed system must not stop the others
                log(f"FAILED {system.name}: {error}")
                with lock:
                    failures.append(system.name)

    threads = [threading.Thread(target=lane) for _ in range(cfg.lanes)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        print(f"failed: {failures}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
