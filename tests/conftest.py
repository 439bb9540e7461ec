"""Shared fixtures: a tiny synthetic corpus, generated once per test session; a Python without torch."""

import subprocess
import sys
from pathlib import Path

import pytest

# prepended to code run by ``without_torch``: any import of torch or transformers fails, as on a device
_BLOCK_TORCH = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('torch', 'transformers'):
            raise ImportError(f'{name} is blocked in this test')
sys.meta_path.insert(0, Block())
"""


@pytest.fixture(autouse=True, scope="session")
def _kernel_cache(tmp_path_factory):
    """Rewritten models (runtime/kernel_choice.py) go to a folder of this test session, not ~/.cache."""
    import os

    os.environ["SPEECHMPQ_CACHE"] = str(tmp_path_factory.mktemp("kernel-cache"))


@pytest.fixture
def without_torch():
    """run(code) -> CompletedProcess: ``code`` in a fresh Python where torch cannot be imported."""
    def run(code: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-c", _BLOCK_TORCH + code], capture_output=True, text=True)

    return run


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory) -> Path:
    from speechmpq.train.corpus.build import CorpusConfig, build_corpus

    out = tmp_path_factory.mktemp("corpus") / "tiny"
    build_corpus(CorpusConfig(out=out, hours=0.01, seed=7, eval_utterances=6, jobs=2),
                 progress=False)
    return out
