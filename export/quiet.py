"""Keep the terminal quiet: only errors reach it during an export with ``progress=False``
(``speechmpq export --quiet``), and onnxruntime's quantizers never chatter through the root logger."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def root_logger_at(level: int) -> Iterator[logging.Logger]:
    """The root logger at ``level`` inside; after, its level and handlers as they were before (a
    library that calls ``logging.basicConfig`` inside adds a stderr handler, removed again here)."""
    root = logging.getLogger()
    saved_level, saved_handlers = root.level, list(root.handlers)
    root.setLevel(level)
    try:
        yield root
    finally:
        root.setLevel(saved_level)
        root.handlers[:] = saved_handlers


@contextmanager
def errors_only() -> Iterator[None]:
    """Only errors reach the terminal inside: the root logger at ERROR, transformers at error
    verbosity without progress bars (from_pretrained's "Loading weights" bar), Python warnings
    ignored. Each setting is restored after."""
    from transformers.utils import logging as hf_logging

    verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        with root_logger_at(logging.ERROR), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()
