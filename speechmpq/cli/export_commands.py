"""The ``export`` subcommand: a model directory (or a preset shape) -> one self-describing .onnx."""

from __future__ import annotations

from pathlib import Path

from speechmpq.cli.train_commands import need_train_extra
from speechmpq.errors import SpeechmpqError


def _cmd_export(args) -> int:
    need_train_extra()
    from speechmpq.export import ExportConfig, Source, export_onnx, write_summary

    if args.model is None and args.preset is None:
        raise SpeechmpqError("export needs a model directory or --preset NAME")
    if args.model is not None and not Path(args.model).is_dir():
        raise SpeechmpqError(f"{args.model}: not a model directory")
    window = {name: value for name, value in [("chunk_ms", args.chunk_ms), ("left_context_ms", args.left_ms),
                                              ("right_context_ms", args.right_ms)] if value is not None}
    cfg = ExportConfig(exporter=args.exporter, opset=args.opset, block_size=args.block_size,
                       others=args.others, accuracy_level=args.accuracy_level,
                       min_container_bits=args.min_container, audio_graph=args.audio_graph,
                       frontend_cache=not args.no_frontend_cache, kernel_table=args.kernel_table,
                       lm=args.lm, lm_weight=args.lm_weight, word_score=args.word_score,
                       lm_beam_size=args.lm_beam_size, **window)
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


def add_commands(commands) -> None:
    """The export stage's subparser."""
    export = commands.add_parser("export", help="model directory -> one self-describing .onnx file")
    export.add_argument("model", nargs="?", help="model directory (float or quantized)")
    export.add_argument("--out", type=Path, required=True, help="the .onnx file to write")
    export.add_argument("--preset", default=None, help="instead of a directory: a preset shape with "
                        "random weights (tiny, demo, demo-gn, w2v2-base, hubert-large)")
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
    export.add_argument(
        "--accuracy-level",
        type=int,
        default=None,
        choices=range(5),
        help="MatMulNBits accuracy level recommended to the runtime: 0 float activations, "
        "4 int8 activations (default: 0)",
    )
    export.add_argument(
        "--min-container",
        type=int,
        default=2,
        choices=[2, 4, 8],
        help="narrowest container: 4 stores 2-bit weights as INT4 (faster ORT kernels)",
    )
    export.add_argument(
        "--chunk-ms", type=int, default=None, help="recommended streaming chunk (default 640 ms)"
    )
    export.add_argument("--left-ms", type=int, default=None, help="recommended left context (2560 ms)")
    export.add_argument("--right-ms", type=int, default=None, help="recommended look-ahead (960 ms)")
    export.add_argument("--lm", default=None, metavar="NAME",
                        help="recommend this LM (a file name the runtime looks for beside the model, e.g. "
                        "en-us.lm.npz): the auto decoder uses it, and only it")
    export.add_argument("--lm-weight", type=float, default=None, help="with --lm: its weight, chosen on dev")
    export.add_argument("--word-score", type=float, default=None, help="with --lm: its word score")
    export.add_argument("--lm-beam-size", type=int, default=None,
                        help="with --lm: the hypotheses its beam search keeps, chosen on dev (runtime "
                        "default 24)")
    export.add_argument(
        "--kernel-table",
        default="default",
        metavar="FILE|default|none",
        help="embed this table of speechmpq kernels in the file: the runtime chooses each layer's "
        "kernel with it on CPUs of the class it was measured on (default/none: embed nothing; the "
        "file stores every layer weight-only and the runtime picks kernels where it loads)",
    )
    export.add_argument(
        "--no-frontend-cache",
        action="store_true",
        help="plain input_values -> logits graph, without the cached-conv-frames input and "
        "output that let streaming skip the conv work of audio already encoded",
    )
    export.add_argument(
        "--audio-graph",
        action="store_true",
        help="also write NAME.audio.onnx: audio file bytes in (decoded in the graph by "
        "onnxruntime-extensions), logits and token ids out",
    )
    export.add_argument("--summary", type=Path, default=None, help="also write a JSON summary here")
    export.add_argument("--quiet", action="store_true")
    export.set_defaults(func=_cmd_export)
    add_kernel_command(commands)


def _cmd_kernels(args) -> int:
    need_train_extra()
    import shlex
    import sys

    from speechmpq.export import measure_kernels, write_kernel_table

    if args.threads < 1 or args.repetitions < 1:
        raise SpeechmpqError("--threads and --repetitions must be >= 1")
    if args.out.suffix != ".json":
        raise SpeechmpqError(f"--out must name a .json file (the .md is written beside it), not {args.out}")
    table = measure_kernels(args.preset, args.threads, args.repetitions, progress=not args.quiet)
    command = "speechmpq " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    paths = write_kernel_table(table, args.out, command)
    if not args.quiet:
        for bits, levels in sorted(table["best"].items(), key=lambda item: int(item[0])):
            print(
                f"{bits:>2}-bit weights: "
                + "; ".join(
                    f"acc {level}: {entry['kernel']} {entry['model_ms']:.1f} ms/window"
                    for level, entry in levels.items()
                )
            )
        print("wrote " + ", ".join(str(p) for p in paths))
    return 0


def add_kernel_command(commands) -> None:
    kernels = commands.add_parser(
        "kernels",
        help="time every onnxruntime kernel for a model's weight shapes "
        "on this machine (the table export's kernel map reads)",
    )
    kernels.add_argument("--preset", required=True, choices=["tiny", "demo", "w2v2-base", "hubert-large"])
    kernels.add_argument("--threads", type=int, default=2, help="intra-op threads (default 2)")
    kernels.add_argument("--repetitions", type=int, default=7, help="interleaved rounds (default 7)")
    kernels.add_argument("--out", type=Path, required=True, help="JSON table to write (and .md beside it)")
    kernels.add_argument("--quiet", action="store_true")
    kernels.set_defaults(func=_cmd_kernels)
