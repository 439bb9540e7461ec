"""Subcommands that run .onnx models (and PyTorch ones for ``eval``): ``eval``, ``stream``, ``demo``,
``serve``, ``bench``; the runtime flags they share map onto RecognizerConfig."""

from __future__ import annotations

import argparse
import json
import shlex
from pathlib import Path

from speechmpq.errors import SpeechmpqError


def _recognizer_config(args, streaming: bool = True):
    """Runtime flags -> RecognizerConfig; without ``--streaming`` (eval) the input is one window."""
    from speechmpq.runtime import DecoderConfig, RecognizerConfig, SessionConfig, StreamingConfig

    chunking = (StreamingConfig(args.chunk_ms, args.left_ms, args.right_ms, args.normalization)
                if streaming else StreamingConfig(chunk_ms=0, normalization=args.normalization))
    return RecognizerConfig(
        session=SessionConfig(threads=args.threads, accuracy_level=args.accuracy_level,
                              optimization=args.optimization, kernels=args.kernels,
                              kernel_table=args.kernel_table),
        streaming=chunking,
        decoder=DecoderConfig(args.decoder, args.beam_size, lm=args.lm, lexicon=args.lexicon,
                              lm_weight=args.lm_weight, word_score=args.word_score))


def _add_runtime_flags(parser, decoder: str = "auto") -> None:
    group = parser.add_argument_group("runtime (.onnx models)")
    group.add_argument("--chunk-ms", type=int, default=None,
                       help="new audio per model call (default: the model's metadata)")
    group.add_argument("--left-ms", type=int, default=None, help="left context (default: metadata)")
    group.add_argument("--right-ms", type=int, default=None, help="look-ahead (default: metadata)")
    group.add_argument("--normalization", default="running", choices=["running", "window", "frozen"],
                       help="for models that expect normalised input: running statistics, per window, "
                       "or the first window's then fixed (the front-end cache is exact only with frozen)")
    group.add_argument("--decoder", default=decoder, choices=["auto", "greedy", "beam", "lm"],
                       help="CTC decoding: greedy best path, beam (no LM), lm (lexicon + n-gram LM), auto: "
                       f"lm where an LM is given or lm.arpa[.gz] lies beside the model, else greedy "
                       f"(default: {decoder})")
    group.add_argument("--beam-size", type=int, default=None,
                       help="hypotheses kept: default 8 with --decoder beam, 24 with lm")
    group.add_argument("--lm", default=None, metavar="FILE",
                       help="n-gram LM: ARPA (.arpa, .arpa.gz) or converted arrays (.npz), from speechmpq lm")
    group.add_argument("--lexicon", default=None, metavar="FILE",
                       help="WORD T O K E N S | per line (default: NAME.lexicon.txt beside NAME.npz or "
                       "NAME.arpa[.gz], or lexicon.txt beside an ARPA LM, else the LM's words spelled "
                       "letter by letter)")
    group.add_argument("--lm-weight", type=float, default=None,
                       help="weight of the LM log probability (default: the model's advice for its LM, "
                       "else 0.65)")
    group.add_argument("--word-score", type=float, default=None,
                       help="score added per word (default: the model's advice, else 0.5)")
    group.add_argument("--threads", type=int, default=0, help="onnxruntime threads (0: one per core)")
    group.add_argument("--accuracy-level", type=int, default=None,
                       help="MatMulNBits accuracy level 0..4 (default: the model's)")
    group.add_argument("--optimization", default="all", help="ORT graph optimisation level")
    _add_kernel_flags(group)


def _add_kernel_flags(group) -> None:
    group.add_argument("--kernels", default="auto", choices=["auto", "int8", "nbits", "float"],
                       help="how each quantized layer runs on this CPU: auto the fastest exact kernel "
                       "here (int8 activations only where the model's accuracy level allows), int8 "
                       "int8-dynamic wherever exact here, nbits as stored, float dequantized to fp32 "
                       "(default: auto)")
    group.add_argument("--kernel-table", default=None, metavar="FILE",
                       help="choose kernels with this table from speechmpq kernels (default: the "
                       "model's own table where measured on a CPU like this one, else built-in rules)")


def _cmd_eval(args) -> int:
    from speechmpq.jobs import evaluation

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


def _cmd_stream(args) -> int:
    from speechmpq.runtime import stream_files

    return stream_files(args.model, args.audio, _recognizer_config(args), feed_ms=args.feed_ms,
                        realtime=args.realtime, quiet=args.quiet, verbose=args.verbose)


def _cmd_demo(args) -> int:
    from speechmpq.edge_demo.terminal import demo

    device = int(args.device) if args.device is not None and args.device.isdigit() else args.device
    return demo(args.audio, args.model, _recognizer_config(args), realtime=args.realtime,
                microphone=args.mic, device=device, feed_ms=args.feed_ms, seconds=args.seconds)


def _port(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"must be a port number 1..65535, not {text!r}")
    return int(text)


def _cmd_serve(args) -> int:
    from speechmpq.edge_demo.server import serve

    return serve(args.model, _recognizer_config(args), host=args.host, port=args.port,
                 max_streams=args.max_streams, batch=not args.no_batch)


def _label_values(entries: list[str], flag: str = "--frontend-cache", form: str = "on|off|auto"
                  ) -> dict[str, str]:
    pairs = [entry.partition("=") for entry in entries]
    bad = [entry for entry, (_, sep, value) in zip(entries, pairs, strict=True) if not sep or not value]
    if bad:
        raise SpeechmpqError(f"{flag} takes LABEL={form}, not {bad[0]!r}")
    return {label: value for label, _, value in pairs}


def _cmd_bench(args) -> int:
    from speechmpq.runtime import BenchConfig, run_bench

    threads = [int(t) for t in args.threads.split(",")] if args.threads else [1, 2]
    config = BenchConfig(models=args.models, data=args.data, out=args.out, threads=threads,
                         repetitions=args.repetitions, chunk_ms=args.chunk_ms, left_ms=args.left_ms,
                         right_ms=args.right_ms, stream_seconds=args.stream_seconds, wer=not args.no_wer,
                         end_of_speech_utterances=args.eos_utterances, profile=args.profile,
                         fp32=args.fp32, mpq=args.mpq, int8=args.int8, title=args.title,
                         fp32_cached=args.fp32_cached, int8_cached=args.int8_cached,
                         frontend_cache=_label_values(args.frontend_cache),
                         kernels=_label_values(args.kernels, "--kernels", "auto|int8|nbits|float"),
                         decoders={label: {"method": "lm", "lm": lm, "beam_size": args.beam_size,
                                           "lm_weight": args.lm_weight, "word_score": args.word_score}
                                   for label, lm in _label_values(args.lm, "--lm", "FILE").items()})
    report = run_bench(config, progress=not args.quiet)
    from speechmpq.runtime import bench_markdown, write_report

    command = "speechmpq " + shlex.join(args.argv)
    written = write_report(report, args.out, command)
    print(bench_markdown({**report, "command": command}, command))
    print("wrote " + ", ".join(str(p) for p in written))
    return 0


def _cmd_info(args) -> int:
    from speechmpq.runtime import OnnxCTCModel, SessionConfig

    model = OnnxCTCModel(args.model, SessionConfig(threads=1, accuracy_level=args.accuracy_level,
                                                   kernels=args.kernels, kernel_table=args.kernel_table))
    info = model.info
    bits = (f", {info.bitplan['average_bits']:.2f} bits per weight over {len(info.bitplan['layers'])} layers"
            if info.bitplan else "")
    print(f"{args.model}: {info.weights}{bits}; {info.source_model_type}, {info.sample_rate} Hz, "
          f"do_normalize {str(info.do_normalize).lower()}, front-end cache {info.frontend_cache}")
    print(f"loaded in {model.load_seconds:.2f} s; {model.kernels.summary()}")
    if model.kernels.layers:
        print(model.kernels.table())
    return 0


def add_commands(commands) -> None:
    """The runtime's subparsers."""
    _add_info(commands)
    _add_eval(commands)
    _add_stream_and_demo(commands)
    _add_serve(commands)
    _add_bench(commands)


def _add_info(commands) -> None:
    info = commands.add_parser("info", help="what an exported .onnx holds, and the kernel each layer "
                               "runs as on this CPU (and why)")
    info.add_argument("model", help="exported .onnx file")
    info.add_argument("--accuracy-level", type=int, default=None, choices=range(5),
                      help="MatMulNBits accuracy level 0..4 (default: the model's)")
    _add_kernel_flags(info)
    info.set_defaults(func=_cmd_info)


def _add_eval(commands) -> None:
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
    _add_runtime_flags(evaluate, decoder="greedy")  # like PyTorch models' eval; --decoder auto|lm for the LM
    evaluate.add_argument("--quiet", action="store_true")
    evaluate.set_defaults(func=_cmd_eval)


def _add_stream_and_demo(commands) -> None:
    stream = commands.add_parser("stream", help="stream audio files through an exported .onnx model, "
                                 "printing partial results as they change")
    stream.add_argument("model", help="exported .onnx file")
    stream.add_argument("audio", nargs="+", help="audio files (any rate and channel count)")
    stream.add_argument("--feed-ms", type=int, default=100, help="audio handed to the stream per step")
    stream.add_argument("--realtime", action="store_true", help="feed at the audio's own pace")
    _add_runtime_flags(stream)
    stream.add_argument("--quiet", action="store_true", help="final transcripts only")
    stream.add_argument("--verbose", action="store_true",
                        help="also print the kernel each layer runs as on this CPU, and why")
    stream.set_defaults(func=_cmd_stream)

    demo = commands.add_parser("demo", help="live streaming transcription in the terminal (a file, the "
                               "bundled sample clips, or the microphone)")
    demo.add_argument("audio", nargs="*", help="audio files (default: the bundled sample clips)")
    demo.add_argument("--model", default=None,
                      help="exported .onnx (default: models/whisper-base-ctc-4bit.onnx)")
    demo.add_argument("--realtime", action="store_true", help="feed files at their own pace")
    demo.add_argument("--mic", action="store_true", help="the microphone (needs speechmpq[mic])")
    demo.add_argument("--device", default=None, help="input device name or index for --mic")
    demo.add_argument("--seconds", type=float, default=None, help="stop --mic after this long")
    demo.add_argument("--feed-ms", type=int, default=100, help="audio handed to the stream per step")
    _add_runtime_flags(demo)
    demo.set_defaults(func=_cmd_demo)


def _add_serve(commands) -> None:
    serve = commands.add_parser("serve", help="browser demo: a local page streams the microphone or a "
                                "dropped file to the model (needs speechmpq[serve])")
    serve.add_argument("--model", default=None,
                       help="exported .onnx (default: models/whisper-base-ctc-4bit.onnx)")
    serve.add_argument("--host", default="127.0.0.1",
                       help="address to listen on (default 127.0.0.1: this machine only)")
    serve.add_argument("--port", type=_port, default=8000)
    serve.add_argument("--max-streams", type=int, default=16, help="concurrent streams (tabs) allowed")
    serve.add_argument("--no-batch", action="store_true",
                       help="decode each stream in its own model calls (default: the ready chunks of all "
                       "streams share calls)")
    _add_runtime_flags(serve)
    serve.set_defaults(func=_cmd_serve)


def _add_bench(commands) -> None:
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
    bench.add_argument("--fp32-cached", default=None, help="label of the FP32 row streamed with the "
                       "front-end cache (second set of headline ratios)")
    bench.add_argument("--int8-cached", default=None, help="label of the ORT int8 row with the cache")
    bench.add_argument("--lm", nargs="+", default=[], metavar="LABEL=FILE",
                       help="rows decoded with the lexicon + n-gram LM decoder (default: greedy); a "
                       "model may appear twice under two labels, greedy and with the LM")
    bench.add_argument("--beam-size", type=int, default=None, help="beam of the --lm rows (default 24)")
    bench.add_argument("--lm-weight", type=float, default=None,
                       help="LM weight of the --lm rows (default: the model's advice, else 0.65)")
    bench.add_argument("--word-score", type=float, default=None,
                       help="word score of the --lm rows (default: the model's advice, else 0.5)")
    bench.add_argument("--frontend-cache", nargs="+", default=[], metavar="LABEL=on|off|auto",
                       help="per row: reuse conv frames across windows (default auto: where exact)")
    bench.add_argument("--kernels", nargs="+", default=[], metavar="LABEL=auto|int8|nbits|float",
                       help="per row: how its quantized layers run on this CPU (default auto: the "
                       "fastest exact kernel here); the choice is printed in the report")
    bench.add_argument("--title", default="", help="report title")
    bench.add_argument("--quiet", action="store_true")
    bench.set_defaults(func=_cmd_bench)
