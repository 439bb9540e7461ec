from pathlib import Path

import numpy as np
import pytest
import soundfile

from speechmpq.datasets import read_dataset, read_manifest
from speechmpq.errors import SpeechmpqError

REALSPEECH = Path(__file__).resolve().parents[2].parent / "shared" / "realspeech"


def test_plain_manifest_relative_paths_and_normalisation(tmp_path):
    soundfile.write(tmp_path / "a.wav", np.zeros(1600), 16000)
    (tmp_path / "m.tsv").write_text("path\ttranscript\na.wav\tHello, world 2!\n\n")
    [utterance] = read_dataset(tmp_path / "m.tsv")
    assert utterance.path == tmp_path / "a.wav"
    assert utterance.transcript == "HELLO WORLD TWO"
    assert utterance.utt_id == "a"


def test_malformed_manifest_line_is_reported(tmp_path):
    (tmp_path / "m.tsv").write_text("only-one-column\n")
    with pytest.raises(SpeechmpqError, match=r"m.tsv:1"):
        read_manifest(tmp_path / "m.tsv")


@pytest.mark.skipif(not (REALSPEECH / "manifest.tsv").is_file(),
                    reason="the shared realspeech folder is not beside this checkout")
def test_reads_the_shared_realspeech_manifest():
    utterances = read_manifest(REALSPEECH / "manifest.tsv")
    assert len(utterances) == 30
    assert all(u.path.is_file() and u.transcript for u in utterances)
