"""``speechmpq export --quiet``: nothing but errors reaches the terminal, and the process's logging
setup is as it was afterwards."""

import logging
import subprocess
import sys

from transformers.utils import logging as hf_logging

from speechmpq.cli import main
from speechmpq.export.quiet import root_logger_at


def test_quiet_export_with_a_peer_prints_nothing(tmp_path, capfd):
    # a fresh process: onnxruntime's quantizers set up the root logger on their first import (both
    # peers' tools log through it), which pytest's own log handlers would hide in this one
    out = tmp_path / "x.onnx"
    result = subprocess.run([sys.executable, "-m", "speechmpq", "export", "--preset", "tiny", "--peer",
                             "ort-int8-dynamic", "--quiet", "--out", str(out)], check=False)
    printed = capfd.readouterr()
    assert result.returncode == 0 and out.is_file()
    assert printed.out == "" and printed.err == ""


def _logging_state() -> tuple:
    root = logging.getLogger()
    return root.level, list(root.handlers), hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()


def test_quiet_export_leaves_logging_as_it_was(tmp_path, capsys):
    before = _logging_state()
    assert main(["export", "--preset", "tiny", "--peer", "ort-int4-rtn", "--quiet",
                 "--out", str(tmp_path / "x.onnx")]) == 0
    assert capsys.readouterr() == ("", "")
    assert _logging_state() == before


def test_root_logger_at_undoes_a_basic_config_inside():
    root = logging.getLogger()
    saved = root.level, list(root.handlers)
    root.handlers[:] = []  # as in a fresh process, where logging.basicConfig takes effect
    try:
        with root_logger_at(logging.ERROR):
            assert root.level == logging.ERROR
            logging.basicConfig(level=logging.INFO)  # what importing onnxruntime's quantizer does
            assert root.level == logging.INFO and len(root.handlers) == 1
        assert root.level == saved[0] and root.handlers == []
    finally:
        root.setLevel(saved[0])
        root.handlers[:] = saved[1]
