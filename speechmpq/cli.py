"""The ``speechmpq`` command line: thin wrappers that map flags onto config objects.

Every subcommand exits 0 on success, 1 when an input (file, model, config) is unusable, with a
one-line ``error:`` message instead of a traceback, and 130 on Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import shlex
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


def _layer_rules(rules: list[str], keep_default: bool) -> dict:
    """--layer NAME=SETTING flags (first match wins) in front of the default transformer rule."""
    from speechmpq.train.supernet import TRANSFORMER_LINEARS

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
    _need_train_extra()
    from speechmpq.train.quantize import quantize
    from speechmpq.train.quantize_config import QuantizeConfig
    from speechmpq.train.supernet import SupernetConfig

    supernet = SupernetConfig(
        candidates=tuple(args.candidates), granularity=args.granularity,
        learn_steps=not args.fixed_steps, layers=_layer_rules(args.layer, not args.no_default_layers))
    cfg = QuantizeConfig(
        model=args.model, train_data=args.data, out=args.out, method=args.method, bits=args.bits,
        target_bits=args.target_bits, window=args.window, search=args.search, supernet=supernet,
        steps=args.steps, pass2_steps=args.pass2_steps, stop_at_step=args.stop_at_step,
        batch_seconds=args.batch_seconds, max_utterance_seconds=args.max_utterance_seconds,
        min_batch_utterances=args.min_batch_utterances, lr=args.lr, logits_lr=args.logits_lr,
        warmup_ratio=args.warmup_ratio,
        kl_weight=args.kl_weight, size_weight=args.size_weight, tau_start=args.tau_start,
        tau_end=args.tau_end, sensitivity_batches=args.sensitivity_batches, seed=args.seed,
        threads=args.threads, bf16=not args.no_bf16, device=args.device, workers=args.workers,
        checkpoint_every=args.checkpoint_every, log_every=args.log_every,
    )  # fmt: skip
    summary = quantize(cfg, progress=not args.quiet)
    if not summary:
        print(f"stopped; run the same command again to resume from {cfg.out / 'checkpoint.pt'}")
        return 0
    print(f"{summary['method']}: average {summary['average_bits']:.3f} bits over searched layers, "
          f"{summary['bytes_paper'] / 1e6:.2f} MB (others 8-bit) vs {summary['bytes_fp32'] / 1e6:.2f} MB "
          f"fp32, {summary['compression_seconds']:.0f} s")
    print(f"quantized model in {cfg.out / 'model'}, bit plan in {cfg.out / 'bitplan.json'}")
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
    recognizer = (_recognizer_config(args, streaming=args.streaming)
                  if Path(args.model).suffix == ".onnx" else None)
    summary = evaluation.evaluate(Path(args.model), Path(args.data), out=args.out,
                                  progress=not args.quiet, table=args.table, device=args.device,
                                  recognizer=recognizer)
    print(json.dumps({k: v for k, v in summary.items() if k != "groups"}, indent=None))
    return 0


def _recognizer_config(args, streaming: bool = True):
    """Runtime flags -> RecognizerConfig; without ``--streaming`` (eval) the input is one window."""
    from speechmpq.runtime.session import SessionConfig
    from speechmpq.runtime.stream import DecoderConfig, RecognizerConfig, StreamingConfig

    chunking = (StreamingConfig(args.chunk_ms, args.left_ms, args.right_ms, args.normalization)
                if streaming else StreamingConfig(chunk_ms=0, normalization=args.normalization))
    return RecognizerConfig(
        session=SessionConfig(threads=args.threads, accuracy_level=args.accuracy_level,
                              optimization=args.optimization),
        streaming=chunking, decoder=DecoderConfig(args.decoder, args.beam_size))


def _add_runtime_flags(parser) -> None:
    group = parser.add_argument_group("runtime (.onnx models)")
    group.add_argument("--chunk-ms", type=int, default=None,
                       help="new audio per model call (default: the model's metadata)")
    group.add_argument("--left-ms", type=int, default=None, help="left context (default: metadata)")
    group.add_argument("--right-ms", type=int, default=None, help="look-ahead (default: metadata)")
    group.add_argument("--normalization", default="running", choices=["running", "window"],
                       help="for models that expect normalised input: running statistics or per window")
    group.add_argument("--decoder", default="greedy", choices=["greedy", "beam"], help="CTC decoding")
    group.add_argument("--beam-size", type=int, default=8, help="with --decoder beam")
    group.add_argument("--threads", type=int, default=0, help="onnxruntime threads (0: one per core)")
    group.add_argument("--accuracy-level", type=int, default=None,
                       help="MatMulNBits accuracy level 0..4 (default: the model's)")
    group.add_argument("--optimization", default="all", help="ORT graph optimisation level")


def _cmd_stream(args) -> int:
    from speechmpq.runtime.cli import stream_files

    return stream_files(args.model, args.audio, _recognizer_config(args), feed_ms=args.feed_ms,
                        realtime=args.realtime, quiet=args.quiet)


def _cmd_demo(args) -> int:
    from speechmpq.edge_demo.terminal import demo

    device = int(args.device) if args.device is not None and args.device.isdigit() else args.device
    return demo(args.audio, args.model, _recognizer_config(args), realtime=args.realtime,
                microphone=args.mic, device=device, feed_ms=args.feed_ms, seconds=args.seconds)


def _port(text: str) -> int:
    import argparse

    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"must be a port number 1..65535, not {text!r}")
    return int(text)


def _cmd_serve(args) -> int:
    from speechmpq.edge_demo.server import serve

    return serve(args.model, _recognizer_config(args), host=args.host, port=args.port,
                 max_streams=args.max_streams)


def _cmd_pipeline(args) -> int:
    _need_train_extra()
    from speechmpq.train.pipeline import PipelineConfig, format_table, run_pipeline

    cfg = PipelineConfig(out=args.out, model=args.model, seed=args.seed, train_hours=args.train_hours,
                         test_utterances=args.test_utterances, target_bits=args.target_bits,
                         steps=args.steps, pass2_steps=args.pass2_steps, repetitions=args.repetitions,
                         threads=args.threads,
                         fresh=args.fresh, extra={"argv": args.argv})
    result = run_pipeline(cfg, progress=not args.quiet)
    print()
    print(format_table(result["table"]))
    print(f"\nwall time {result['seconds']['total'] / 60:.1f} min; report {args.out / 'pipeline.md'}, "
          f"benchmark report with plots {result['bench_report']}")
    return 0


def _cmd_bench(args) -> int:
    from speechmpq.runtime.bench import BenchConfig, run_bench

    threads = [int(t) for t in args.threads.split(",")] if args.threads else [1, 2]
    config = BenchConfig(models=args.models, data=args.data, out=args.out, threads=threads,
                         repetitions=args.repetitions, chunk_ms=args.chunk_ms, left_ms=args.left_ms,
                         right_ms=args.right_ms, stream_seconds=args.stream_seconds, wer=not args.no_wer,
                         end_of_speech_utterances=args.eos_utterances, profile=args.profile,
                         fp32=args.fp32, mpq=args.mpq, int8=args.int8, title=args.title)
    report = run_bench(config, progress=not args.quiet)
    from speechmpq.runtime.bench_report import markdown, write_report

    command = "speechmpq " + shlex.join(args.argv)
    written = write_report(report, args.out, command)
    print(markdown({**report, "command": command}, command))
    print("wrote " + ", ".join(str(p) for p in written))
    return 0


def _cmd_export(args) -> int:
    _need_train_extra()
    from speechmpq.export.api import Source, export_onnx, write_summary
    from speechmpq.export.config import ExportConfig

    if args.model is None and args.preset is None:
        raise SpeechmpqError("export needs a model directory or --preset NAME")
    if args.model is not None and not Path(args.model).is_dir():
        raise SpeechmpqError(f"{args.model}: not a model directory")
    window = {name: value for name, value in [("chunk_ms", args.chunk_ms), ("left_context_ms", args.left_ms),
                                              ("right_context_ms", args.right_ms)] if value is not None}
    cfg = ExportConfig(exporter=args.exporter, opset=args.opset, block_size=args.block_size,
                       others=args.others, accuracy_level=args.accuracy_level,
                       min_container_bits=args.min_container, audio_graph=args.audio_graph, **window)
    source = Source(model_dir=Path(args.model) if args.model else None, preset=args.preset,
                    model_type=args.model_type, seed=args.seed, plan=args.plan,
                    plan_pattern=args.plan_pattern, peer=args.peer)
    summary = export_onnx(source, args.out, cfg, progress=not args.quiet)
    if summary.get("size") and not args.quiet:
        size = summary["size"]
        print(f"weights {summary['average_bits']:.2f} bits on average over the plan; file "
              f"{size['file_bytes'] / 1e6:.2f} MB = {size['computed_bytes'] / 1e6:.2f} MB computed from "
              f"the plan + {size['overhead_bytes'] / 1e6:.2f} MB scales, graph and metadata")
    if args.summary:
        write_summary(summary, args.summary)
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

    quant = commands.add_parser("quantize", help="mixed-precision (or uniform) quantization-aware training")
    quant.add_argument("--model", required=True, type=Path, help="full-precision model directory")
    quant.add_argument("--data", required=True, type=Path, help="training set (tree or .tsv)")
    quant.add_argument("--out", required=True, type=Path, help="run folder (resumes if present)")
    quant.add_argument("--method", default="one-stage", choices=["one-stage", "uniform", "two-stage"])
    quant.add_argument("--bits", type=int, default=None, help="uniform: bits of every searched layer")
    quant.add_argument("--target-bits", type=float, default=3.5, help="average-bits budget")
    quant.add_argument("--window", type=float, default=0.2,
                       help="size term off inside [target-bits - window, target-bits]")
    quant.add_argument("--search", default="nas", choices=["nas", "kl"], help="two-stage stage 1")
    quant.add_argument("--candidates", type=int, nargs="+", default=[2, 4, 8], help="bit widths")
    quant.add_argument("--granularity", default="per-tensor", choices=["per-tensor", "per-channel"])
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
    quant.add_argument("--logits-lr", type=float, default=1e-2, help="bit-choice logits")
    quant.add_argument("--warmup-ratio", type=float, default=0.1)
    quant.add_argument("--kl-weight", type=float, default=1.0, help="beta")
    quant.add_argument("--size-weight", type=float, default=1.0, help="lambda (per average bit)")
    quant.add_argument("--tau-start", type=float, default=0.5)
    quant.add_argument("--tau-end", type=float, default=0.01)
    quant.add_argument("--sensitivity-batches", type=int, default=4)
    quant.add_argument("--checkpoint-every", type=int, default=50)
    quant.add_argument("--log-every", type=int, default=10)
    quant.add_argument("--seed", type=int, default=0)
    quant.add_argument("--threads", type=int, default=0, help="torch threads (0: all cores)")
    quant.add_argument("--workers", type=int, default=-1, help="data-loading processes")
    quant.add_argument("--device", default="auto", help="auto, cpu or cuda")
    quant.add_argument("--no-bf16", action="store_true")
    quant.add_argument("--quiet", action="store_true")
    quant.set_defaults(func=_cmd_quantize)

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
    evaluate.add_argument("--device", default="cpu", help="cpu or cuda (PyTorch models)")
    evaluate.add_argument("--streaming", action="store_true",
                          help=".onnx: decode chunk by chunk as the stream command does (default: offline)")
    _add_runtime_flags(evaluate)
    evaluate.add_argument("--quiet", action="store_true")
    evaluate.set_defaults(func=_cmd_eval)

    stream = commands.add_parser("stream", help="stream audio files through an exported .onnx model, "
                                 "printing partial results as they change")
    stream.add_argument("model", help="exported .onnx file")
    stream.add_argument("audio", nargs="+", help="audio files (any rate and channel count)")
    stream.add_argument("--feed-ms", type=int, default=100, help="audio handed to the stream per step")
    stream.add_argument("--realtime", action="store_true", help="feed at the audio's own pace")
    _add_runtime_flags(stream)
    stream.add_argument("--quiet", action="store_true", help="final transcripts only")
    stream.set_defaults(func=_cmd_stream)

    pipe = commands.add_parser("pipeline", help="the whole job: corpus -> one-stage MPQ of the demo model -> "
                               "ONNX -> streaming WER, latency and memory, FP32 vs MPQ in one table")
    pipe.add_argument("--out", type=Path, default=Path("out/pipeline"), help="run folder (resumes)")
    pipe.add_argument("--model", type=Path, default=Path("models/demo"), help="full-precision model dir")
    pipe.add_argument("--seed", type=int, default=1, help="corpus seed")
    pipe.add_argument("--train-hours", type=float, default=1.0, help="synthetic training speech")
    pipe.add_argument("--test-utterances", type=int, default=300, help="clean test split size")
    pipe.add_argument("--target-bits", type=float, default=3.0, help="average-bits budget")
    pipe.add_argument("--steps", type=int, default=200, help="one-stage training steps")
    pipe.add_argument("--pass2-steps", type=int, default=0, help="then fine-tune with the bits fixed")
    pipe.add_argument("--repetitions", type=int, default=2, help="latency runs per model")
    pipe.add_argument("--threads", type=int, default=2, help="threads for training and latency")
    pipe.add_argument("--fresh", action="store_true", help="delete --out first instead of resuming")
    pipe.add_argument("--quiet", action="store_true", help="no progress bars")
    pipe.set_defaults(func=_cmd_pipeline)

    demo = commands.add_parser("demo", help="live streaming transcription in the terminal (a file, the "
                               "bundled sample clips, or the microphone)")
    demo.add_argument("audio", nargs="*", help="audio files (default: the bundled sample clips)")
    demo.add_argument("--model", default=None, help="exported .onnx (default: models/demo-mpq.onnx)")
    demo.add_argument("--realtime", action="store_true", help="feed files at their own pace")
    demo.add_argument("--mic", action="store_true", help="the microphone (needs speechmpq[mic])")
    demo.add_argument("--device", default=None, help="input device name or index for --mic")
    demo.add_argument("--seconds", type=float, default=None, help="stop --mic after this long")
    demo.add_argument("--feed-ms", type=int, default=100, help="audio handed to the stream per step")
    _add_runtime_flags(demo)
    demo.set_defaults(func=_cmd_demo)

    serve = commands.add_parser("serve", help="browser demo: a local page streams the microphone or a "
                                "dropped file to the model (needs speechmpq[serve])")
    serve.add_argument("--model", default=None, help="exported .onnx (default: models/demo-mpq.onnx)")
    serve.add_argument("--host", default="127.0.0.1",
                       help="address to listen on (default 127.0.0.1: this machine only)")
    serve.add_argument("--port", type=_port, default=8000)
    serve.add_argument("--max-streams", type=int, default=16, help="concurrent streams (tabs) allowed")
    _add_runtime_flags(serve)
    serve.set_defaults(func=_cmd_serve)

    bench = commands.add_parser("bench", help="latency, memory and WER of .onnx models side by side "
                                "(each in a fresh process, interleaved repetitions)")
    bench.add_argument("--models", nargs="+", required=True,
                       help="LABEL=PATH or PATH: .onnx files, or a PyTorch model directory (eager row)")
    bench.add_argument("--data", nargs="+", required=True, help="dataset folders (latency audio, WER)")
    bench.add_argument("--out", type=Path, required=True, help="report prefix: OUT.json, OUT.md, OUT_*.png")
    bench.add_argument("--threads", default="1,2", help="thread counts, e.g. 1,2")
    bench.add_argument("--repetitions", type=int, default=3, help="interleaved repetitions")
    bench.add_argument("--chunk-ms", type=int, default=None, help="default: each model's metadata")
    bench.add_argument("--left-ms", type=int, default=None)
    bench.add_argument("--right-ms", type=int, default=None)
    bench.add_argument("--stream-seconds", type=float, default=30.0, help="audio per latency run")
    bench.add_argument("--eos-utterances", type=int, default=10,
                       help="utterances timed from end of speech to final result")
    bench.add_argument("--profile", action="store_true",
                       help="also profile each .onnx model with onnxruntime (time per operator type)")
    bench.add_argument("--no-wer", action="store_true", help="latency and memory only (random weights)")
    bench.add_argument("--fp32", default=None, help="label of the FP32 reference (default: by metadata)")
    bench.add_argument("--mpq", default=None, help="label of the headline MPQ model (default: by metadata)")
    bench.add_argument("--int8", default=None, help="label of the ORT int8 peer (default: by metadata)")
    bench.add_argument("--title", default="", help="report title")
    bench.add_argument("--quiet", action="store_true")
    bench.set_defaults(func=_cmd_bench)

    export = commands.add_parser("export", help="model directory -> one self-describing .onnx file")
    export.add_argument("model", nargs="?", help="model directory (float or quantized)")
    export.add_argument("--out", type=Path, required=True, help="the .onnx file to write")
    export.add_argument("--preset", default=None, help="instead of a directory: a preset shape with "
                        "random weights (tiny, demo, w2v2-base, hubert-large)")
    export.add_argument("--model-type", default=None, help="with --preset: wav2vec2, hubert or wavlm")
    export.add_argument("--seed", type=int, default=0, help="with --preset: weight seed")
    export.add_argument("--plan", type=Path, default=None,
                        help="apply this bitplan.json to a float model (round to nearest, MSE steps)")
    export.add_argument("--plan-pattern", type=Path, default=None,
                        help="repeat this plan's per-matrix-type bits over the model's layers")
    export.add_argument("--peer", default=None, choices=["ort-int8-dynamic", "ort-int4-rtn"],
                        help="quantize the FP32 graph with onnxruntime's own tool instead")
    export.add_argument("--others", default="fp32", choices=["fp32", "int8"],
                        help="weights outside the plan (convolutions, feature projection, CTC head)")
    export.add_argument("--block-size", type=int, default=256, help="rows of K per stored scale")
    export.add_argument("--opset", type=int, default=None, help="default: the lowest that fits")
    export.add_argument("--exporter", default="torchscript", choices=["torchscript", "dynamo"])
    export.add_argument("--accuracy-level", type=int, default=0,
                        help="MatMulNBits accuracy level recommended to the runtime: 0 exact (default), "
                             "4 int8 activations (faster for 4/8-bit layers)")
    export.add_argument("--min-container", type=int, default=2, choices=[2, 4, 8],
                        help="narrowest container: 4 stores 2-bit weights as INT4 (faster ORT kernels)")
    export.add_argument("--chunk-ms", type=int, default=None, help="recommended streaming chunk "
                        "(default 640 ms)")
    export.add_argument("--left-ms", type=int, default=None, help="recommended left context (2560 ms)")
    export.add_argument("--right-ms", type=int, default=None, help="recommended look-ahead (960 ms)")
    export.add_argument("--audio-graph", action="store_true",
                        help="also write NAME.audio.onnx: audio file bytes in (decoded in the graph by "
                             "onnxruntime-extensions), logits and token ids out")
    export.add_argument("--summary", type=Path, default=None, help="also write a JSON summary here")
    export.add_argument("--quiet", action="store_true")
    export.set_defaults(func=_cmd_export)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.argv = sys.argv[1:] if argv is None else list(argv)
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
