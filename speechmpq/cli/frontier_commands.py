"""``speechmpq frontier``: every quantizer a user could pick, judged against FP32 at its stored bits
(jobs/frontier.py), and the table and plot of the result (jobs/frontier_report.py)."""

from __future__ import annotations

import json
import time
from pathlib import Path

from speechmpq.cli.train_commands import need_train_extra


def _cmd_frontier(args) -> int:
    need_train_extra()
    from speechmpq.jobs.frontier import FrontierConfig, System, default_systems, run_frontier

    systems = default_systems()
    if args.systems:
        entries = json.loads(args.systems.read_text())
        systems = [System(**entry) for entry in entries] if args.replace else systems + [
            System(**entry) for entry in entries]
    if args.only:
        unknown = set(args.only) - {s.name for s in systems}
        if unknown:
            raise ValueError(f"--only: no system named {sorted(unknown)}")
        systems = [s for s in systems if s.name in args.only]
    cfg = FrontierConfig(model=args.model, train=args.train, sets=args.sets, role=args.role,
                         out=args.out, lm=args.lm, systems=systems, threads=args.threads,
                         chosen_on=args.chosen_on, lm_weight=args.lm_weight, word_score=args.word_score)

    def log(message: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)

    done = run_frontier(cfg, log)
    where = cfg.out / f"verdicts_{args.role}.json"
    print(f"{len(done['systems'])} systems judged on the {args.role} sets: {where}")
    return 0


def _cmd_frontier_report(args) -> int:
    from speechmpq.jobs.frontier_report import write_report

    paths = write_report(args.runs, args.out, args.command, args.machine)
    print("wrote " + ", ".join(str(p) for p in paths))
    return 0


def add_commands(commands) -> None:
    frontier = commands.add_parser(
        "frontier", help="onnxruntime's weight-only quantizers, round to nearest and quantize runs, each "
        "judged against FP32 on the verdict corpora at the bits it stores (resumable)")
    frontier.add_argument("--model", required=True, type=Path, help="full-precision model directory")
    frontier.add_argument("--train", required=True, type=Path,
                          help="training split for the quantize runs and GPTQ's calibration")
    frontier.add_argument("--sets", required=True, type=Path,
                          help="verdict corpora folder (speechmpq verdict-corpora --out), or one manifest "
                          ".tsv judged as a single corpus (real speech)")
    frontier.add_argument("--role", required=True, choices=["dev", "test"],
                          help="dev: these sets choose settings; test: they only judge")
    frontier.add_argument("--chosen-on", default=None, help="with --role test: the dev results that chose")
    frontier.add_argument("--lm", required=True, type=Path, help="word n-gram LM (ARPA or .npz arrays)")
    frontier.add_argument("--lm-weight", type=float, default=None, help="LM decoder weight (chosen on dev)")
    frontier.add_argument("--word-score", type=float, default=None, help="LM decoder word score")
    frontier.add_argument("--out", required=True, type=Path, help="run folder (resumes if present)")
    frontier.add_argument("--systems", type=Path, default=None,
                          help="JSON list of further systems ({name, family, settings, label})")
    frontier.add_argument("--replace", action="store_true", help="--systems replaces the default ones")
    frontier.add_argument("--only", nargs="+", default=None, help="run only these systems")
    frontier.add_argument("--threads", type=int, default=2, help="onnxruntime threads while decoding")
    frontier.set_defaults(func=_cmd_frontier)
    report = commands.add_parser("frontier-report",
                                 help="table (.md, .json) and plot (.png) of frontier runs")
    report.add_argument("--runs", required=True, type=Path, help="the frontier run folder")
    report.add_argument("--out", required=True, type=Path, help="OUT.md, OUT.json, OUT.png")
    report.add_argument("--command", required=True, help="the frontier command(s) that made the runs")
    report.add_argument("--machine", default=None, help="default: this machine's facts")
    report.set_defaults(func=_cmd_frontier_report)
