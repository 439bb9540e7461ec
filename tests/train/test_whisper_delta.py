"""A trained WhisperForCTC stored as what training changed: written, rebuilt bit for bit, refused when the
installed encoder is not the one it was trained on."""

import json
import shutil

import pytest
import torch

from speechmpq.cli import main
from speechmpq.errors import ModelError
from speechmpq.train.models import load_model, save_model
from speechmpq.train.whisper_delta import BASE_FILE, write_delta
from speechmpq.train.whisper_import import import_whisper


@pytest.fixture
def trained(hf_whisper, tmp_path):
    """A WhisperForCTC imported from the tiny checkpoint whose top layer and head moved (as train-fp
    with --trainable-encoder-layers 1 leaves it)."""
    model = load_model(import_whisper(hf_whisper[0], tmp_path / "init", head_dim=32))
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.startswith(("whisper.encoder.layers.1.", "head.", "lm_head.")):
                parameter.add_(torch.randn_like(parameter) * 1e-3)
    return save_model(model, tmp_path / "trained")


def test_the_delta_stores_only_what_changed_and_rebuilds_the_model_exactly(hf_whisper, trained, tmp_path):
    info = write_delta(trained, str(hf_whisper[0]), tmp_path / "delta")
    stored = json.loads((tmp_path / "delta" / BASE_FILE).read_text())
    assert stored["tensors_stored"] == info["tensors_stored"] and info["stored_mb"] < info["source_mb"]
    from safetensors.numpy import load_file

    names = set(load_file(str(tmp_path / "delta" / "model.safetensors")))
    assert names and all(n.startswith(("whisper.encoder.layers.1.", "head.", "lm_head.")) for n in names)
    full, rebuilt = load_model(trained), load_model(tmp_path / "delta")
    assert type(rebuilt).__name__ == "WhisperForCTC"
    assert not any(p.requires_grad for p in rebuilt.whisper.parameters())
    for (name, a), b in zip(full.state_dict().items(), rebuilt.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    samples = torch.randn(1, 16000)
    assert torch.equal(full(samples).logits, rebuilt(samples).logits)
    assert (tmp_path / "delta" / "vocab.json").is_file()


def test_another_encoder_installed_is_refused_in_one_line(hf_whisper, trained, tmp_path):
    base = tmp_path / "base"
    shutil.copytree(hf_whisper[0], base)
    write_delta(trained, str(base), tmp_path / "delta")
    import transformers

    other = transformers.WhisperForConditionalGeneration.from_pretrained(base)
    with torch.no_grad():
        other.model.encoder.layers[0].fc1.weight.add_(1e-3)
    other.save_pretrained(base)
    with pytest.raises(ModelError, match="not the encoder this model was trained on") as error:
        load_model(tmp_path / "delta")
    assert "\n" not in str(error.value)


def test_the_command_refuses_to_overwrite_its_source_and_a_foreign_base(hf_whisper, trained, tmp_path,
                                                                        capsys):
    command = ["whisper-delta", str(trained), "--base"]
    assert main([*command, str(hf_whisper[0]), "--out", str(tmp_path / "d")]) == 0
    assert "rebuilt and checked equal" in capsys.readouterr().out
    assert main([*command, str(hf_whisper[0]), "--out", str(trained)]) == 1
    assert "replace the model it is made from" in capsys.readouterr().err
    assert (trained / "model.safetensors").is_file()
    assert main([*command, "no-such-package", "--out", str(tmp_path / "e")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no-such-package" in err
