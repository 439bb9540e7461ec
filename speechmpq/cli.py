"""The ``speechmpq`` command line: thin wrappers that map flags onto config objects.

Every subcommand exits 0 on success, 1 when an input (file, model, config) is unusable, with a
one-line ``error:`` message instead of a traceback, and 130 on Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from speechmpq import __version__
from speechmpq.errors import SpeechmpqError


def _need_train_extra() -> None:
    try:
        import torch  # noqa: F401
        import transformers  # noqa: F401
    except ImportError as error:
        raise SpeechmpqError(
            f"this command needs the training extra ({error.name} is missing): "
            "pip install 'speechmpq[train]' torch==2.13.0"
        ) from None


def _cmd_corpus(args) -> int:
    _need_train_extra()
    from speechmpq.train.corpus import CorpusConfig, build_corpus

    cfg = CorpusConfig(out=args.out, hours=args.hours, seed=args.seed, splits=tuple(args.splits),
                       eval_utterances=args.eval_utterances, jobs=args.jobs,
                       overwrite=args.overwrite)
    stats = build_corpus(cfg, progress=not args.quiet)
    for split, figures in stats["splits"].items():
        if split in cfg.splits:
            print(f"{split}: {figures['utterances']} utterances, {figures['hours']:.2f} h, "
                  f"{figures['generation_seconds']:.0f} s to generate")
    print(f"wrote {cfg.out}")
    return 0


def _cmd_train_fp(args) -> int:
    _need_train_extra()
    from speechmpq.train.trainer import TrainConfig, train_fp

    cfg = TrainConfig(
        train_data=args.data, dev_data=args.dev, out=args.out, preset=args.preset,
        model_type=args.model_type, init_from=args.init_from, steps=args.steps,
        stop_at_step=args.stop_at_step, batch_seconds=args.batch_seconds,
        max_utterance_seconds=args.max_utterance_seconds, lr=args.lr,
        warmup_steps=args.warmup_steps, final_lr_ratio=args.final_lr_ratio,
        weight_decay=args.weight_decay, grad_clip=args.grad_clip, eval_every=args.eval_every,
        dev_utterances=args.dev_utterances, checkpoint_every=args.checkpoint_every,
        log_every=args.log_every, seed=args.seed, threads=args.threads, bf16=not args.no_bf16,
        device=args.device, workers=args.workers,
    )  # fmt: skip
    result = train_fp(cfg, progress=not args.quiet)
    if result:
        print(f"final dev WER {result['dev_wer']:.4f} CER {result['dev_cer']:.4f}")
    print(f"models in {cfg.out / 'best'} (lowest dev CER) and {cfg.out / 'final'}")
    return 0


def _cmd_eval(args) -> int:
    from speechmpq import evaluation

    if args.compare:
        result = evaluation.compare_tsv(Path(args.compare[0]), Path(args.compare[1]),
                                        seed=args.seed)
        print(evaluation.format_comparison(result))
        if args.json:
            evaluation.write_json(Path(args.json), result)
        return 0
    if not args.model or not args.data:
        raise SpeechmpqError("eval needs --model and --data (or --compare A.tsv B.tsv)")
    summary = evaluation.evaluate(Path(args.model), Path(args.data), out=args.out,
                                  progress=not args.quiet, table=args.table)
    print(json.dumps({k: v for k, v in summary.items() if k != "groups"}, indent=None))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="speechmpq", description="Mixed-precision quantization and streaming of CTC speech models.")
    parser.add_argument("--version", action="version", version=f"speechmpq {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    corpus = commands.add_parser("corpus", help="synthesize a LibriSpeech-style English corpus")
    corpus.add_argument("--out", required=True, type=Path, help="output folder")
    corpus.add_argument("--hours", type=float, default=1.0, help="hours of the train split")
    corpus.add_argument("--seed", type=int, default=0)
    corpus.add_argument("--splits", nargs="+", default=["train", "dev", "test-clean", "test-other"],
                        help="splits to write (train dev test-clean test-other)")
    corpus.add_argument("--eval-utterances", type=int, default=200,
                        help="utterances in each of dev, test-clean and test-other")
    corpus.add_argument("--jobs", type=int, default=None, help="processes (default: all cores)")
    corpus.add_argument("--overwrite", action="store_true", help="replace existing splits")
    corpus.add_argument("--quiet", action="store_true", help="no progress bar")
    corpus.set_defaults(func=_cmd_corpus)

    train = commands.add_parser("train-fp", help="train a full-precision CTC model (resumable)")
    train.add_argument("--data", required=True, type=Path, help="training set (tree or .tsv)")
    train.add_argument("--dev", type=Path, default=None, help="dev set for model selection")
    train.add_argument("--out", required=True, type=Path, help="run folder (resumes if present)")
    train.add_argument("--preset", default="demo", help="tiny, demo, w2v2-base, hubert-large")
    train.add_argument("--model-type", default=None,
                       help="wav2vec2, hubert or wavlm (default: the preset's own)")
    train.add_argument("--init-from", type=Path, default=None, help="model dir to start from")
    train.add_argument("--steps", type=int, default=20000, help="total steps (LR schedule length)")
    train.add_argument("--stop-at-step", type=int, default=None,
                       help="checkpoint and stop at this step; run again to continue")
    train.add_argument("--batch-seconds", type=float, default=64.0,
                       help="padded audio seconds per batch")
    train.add_argument("--max-utterance-seconds", type=float, default=16.0)
    train.add_argument("--lr", type=float, default=1.5e-3, help="peak learning rate")
    train.add_argument("--warmup-steps", type=int, default=500)
    train.add_argument("--final-lr-ratio", type=float, default=0.05)
    train.add_argument("--weight-decay", type=float, default=0.01)
    train.add_argument("--grad-clip", type=float, default=5.0)
    train.add_argument("--eval-every", type=int, default=500)
    train.add_argument("--dev-utterances", type=int, default=200)
    train.add_argument("--checkpoint-every", type=int, default=100)
    train.add_argument("--log-every", type=int, default=20)
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--threads", type=int, default=0, help="torch threads (0: all cores)")
    train.add_argument("--workers", type=int, default=-1,
                       help="data-loading processes (-1: 1 on CPU, up to 8 on CUDA)")
    train.add_argument("--device", default="auto", help="auto, cpu or cuda")
    train.add_argument("--no-bf16", action="store_true", help="train in fp32")
    train.add_argument("--quiet", action="store_true")
    train.set_defaults(func=_cmd_train_fp)

    evaluate = commands.add_parser("eval", help="WER/CER of a model on a dataset; significance test")
    evaluate.add_argument("--model", help="model directory")
    evaluate.add_argument("--data", help="dataset folder (LibriSpeech tree) or manifest .tsv")
    evaluate.add_argument("--out", type=Path, default=None,
                          help="folder for per-utterance TSV and summary JSON")
    evaluate.add_argument("--compare", nargs=2, metavar=("A.tsv", "B.tsv"),
                          help="MAPSSWE test + bootstrap interval between two per-utterance TSVs")
    evaluate.add_argument("--json", help="with --compare: also write the result as JSON")
    evaluate.add_argument("--table", action="store_true", help="print the per-utterance table")
    evaluate.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    evaluate.add_argument("--quiet", action="store_true")
    evaluate.set_defaults(func=_cmd_eval)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "jobs", 0) is None:
        import os

        args.jobs = os.cpu_count() or 1
    try:
        return args.func(args)
    except (SpeechmpqError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except OSError as error:  # unwritable output, full disk, unreadable input
        where = f"{error.filename}: " if error.filename else ""
        print(f"error: {where}{error.strerror or error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
