"""The export stage's face: every public name from ``speechmpq.export``, loaded on first use."""

import subprocess
import sys

import pytest

import speechmpq.export


def test_importing_the_face_loads_neither_torch_nor_onnx():
    code = ("import sys, speechmpq.export\n"
            "heavy = {'torch', 'onnx', 'onnxruntime', 'transformers'} & set(sys.modules)\n"
            "assert not heavy, heavy\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr


def test_every_public_name_resolves():
    assert set(speechmpq.export.__all__) >= {"export_onnx", "ExportConfig", "Source", "write_summary"}
    for name in speechmpq.export.__all__:
        assert getattr(speechmpq.export, name) is not None, name
    assert set(speechmpq.export.__all__) <= set(dir(speechmpq.export))
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        speechmpq.export.nope  # noqa: B018
