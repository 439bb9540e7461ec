"""The ``speechmpq`` command line: thin wrappers that map flags onto config objects.

One module per stage adds its subcommands (train_commands, export_commands, runtime_commands);
each imports its stage's library only when its command runs, so ``speechmpq --help`` and the
runtime commands work without torch.

Every subcommand exits 0 on success, 1 when an input (file, model, config) is unusable, with a
one-line ``error:`` message instead of a traceback, and 130 on Ctrl-C.
"""

from __future__ import annotations

import argparse
import os
import sys

from speechmpq import __version__
from speechmpq.cli import (
    export_commands,
    frontier_commands,
    lm_commands,
    runtime_commands,
    train_commands,
    whisper_commands,
)
from speechmpq.errors import SpeechmpqError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="speechmpq", description="Mixed-precision quantization and streaming of CTC speech models.")
    parser.add_argument("--version", action="version", version=f"speechmpq {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    train_commands.add_commands(commands)
    whisper_commands.add_commands(commands)
    export_commands.add_commands(commands)
    runtime_commands.add_commands(commands)
    lm_commands.add_commands(commands)
    frontier_commands.add_commands(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.argv = sys.argv[1:] if argv is None else list(argv)
    if getattr(args, "jobs", 0) is None:
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
