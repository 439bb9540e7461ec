"""runtime/ and edge_demo/ must import on a device that has no torch (pytorch/ao test_lean_import)."""

import subprocess
import sys

BLOCK = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('torch', 'transformers'):
            raise ImportError(f'{name} is blocked in this test')
sys.meta_path.insert(0, Block())
"""


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", BLOCK + code], capture_output=True, text=True)


def test_blocker_really_blocks_torch():
    result = _run("import torch")
    assert result.returncode != 0 and "blocked" in result.stderr


def test_runtime_and_shared_modules_import_without_torch():
    code = ("import speechmpq.runtime, speechmpq.runtime.session, speechmpq.runtime.model_info, "
            "speechmpq.edge_demo, speechmpq.audio, speechmpq.datasets, "
            "speechmpq.vocab, speechmpq.significance, speechmpq.evaluation, speechmpq.cli\n"
            "assert 'torch' not in sys.modules")
    result = _run(code)
    assert result.returncode == 0, result.stderr


def test_cli_help_works_without_torch():
    result = _run("from speechmpq.cli import main; raise SystemExit(main(['--help']))")
    assert result.returncode == 0 and "corpus" in result.stdout
