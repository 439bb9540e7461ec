"""WhisperForCTC: shapes, freezing, the log-mel front end against transformers' Whisper feature extractor,
and the importer against a Hugging Face Whisper checkpoint and CTranslate2's own conversion of it."""

import json

import numpy as np
import pytest
import torch

from speechmpq.errors import ModelError
from speechmpq.train.models import load_model
from speechmpq.train.whisper_ctc import LogMel, WhisperCTCConfig, WhisperForCTC, frame_count
from speechmpq.train.whisper_import import import_whisper, read_ctranslate2

TINY = dict(d_model=64, encoder_layers=2, encoder_attention_heads=2, encoder_ffn_dim=128,
            max_source_positions=100, head_dim=32)


def test_logits_have_one_frame_per_320_samples_and_the_frozen_encoder_gets_no_gradient():
    model = WhisperForCTC(WhisperCTCConfig(**TINY)).train()
    samples = torch.randn(2, 16000) * 0.1
    mask = torch.ones(2, 16000, dtype=torch.long)
    mask[1, 9000:] = 0
    labels = torch.tensor([[5, 6, 7, -100], [8, 9, -100, -100]])
    output = model(samples, attention_mask=mask, labels=labels)
    assert output.logits.shape == (2, int(frame_count(16000)), 32) == (2, 50, 32)
    output.loss.backward()
    assert torch.isfinite(output.loss)
    assert all(p.grad is None for p in model.whisper.parameters())
    assert all(p.grad is not None for p in [*model.head.parameters(), *model.lm_head.parameters()])


def test_a_layer_sum_head_learns_its_weights_over_the_frozen_layers():
    model = WhisperForCTC(WhisperCTCConfig(**TINY, layer_sum=True)).train()
    output = model(torch.randn(1, 8000), labels=torch.tensor([[5, 6]]))
    output.loss.backward()
    assert output.logits.shape == (1, 25, 32) and model.layer_weights.grad is not None
    assert all(p.grad is None for p in model.whisper.parameters())


def test_trainable_top_layers_get_gradients_and_the_rest_stays_frozen():
    model = WhisperForCTC(WhisperCTCConfig(**TINY, trainable_encoder_layers=1)).train()
    model(torch.randn(1, 8000), labels=torch.tensor([[5, 6]])).loss.backward()
    grads = {name: p.grad is not None for name, p in model.whisper.named_parameters()}
    assert all(grads[n] for n in grads if n.startswith(("encoder.layers.1.", "encoder.layer_norm.")))
    assert not any(grads[n] for n in grads if n.startswith(("encoder.layers.0.", "encoder.conv")))


def test_the_utterance_rule_is_whisper_s_feature_extractor_and_the_fixed_rule_only_moves_the_floor():
    from transformers import WhisperFeatureExtractor

    rng = np.random.default_rng(0)
    audio = (rng.standard_normal(48000) * np.linspace(0.01, 0.3, 48000)).astype(np.float32)
    reference = WhisperFeatureExtractor(feature_size=80)(audio, sampling_rate=16000,
                                                         return_tensors="np").input_features
    padded = torch.zeros(1, 480000)
    padded[0, :48000] = torch.from_numpy(audio)
    model = WhisperForCTC(WhisperCTCConfig(**TINY, mel_normalization="utterance"))
    with torch.no_grad():
        ours = model.whisper.frontend(padded).numpy()
    assert ours.shape == reference.shape == (1, 80, 3000)
    assert np.abs(ours - reference).max() < 1e-4
    fixed = WhisperForCTC(WhisperCTCConfig(**TINY, mel_ceiling=float(4 * reference.max() - 4)))
    with torch.no_grad():  # the same ceiling as the utterance's own maximum: the same features
        assert np.abs(fixed.whisper.frontend(padded).numpy() - reference).max() < 1e-4


def test_a_hugging_face_whisper_checkpoint_imports_with_its_encoder_intact(hf_whisper, tmp_path):
    folder, reference = hf_whisper
    out = import_whisper(folder, tmp_path / "ctc", head_dim=32)
    model = load_model(out)
    assert type(model).__name__ == "WhisperForCTC" and model.config.encoder_layers == 2
    fresh = LogMel(model.config)  # the fixed front-end weights are not saved: filled again on load
    assert torch.equal(model.whisper.frontend.dft, fresh.dft)
    assert torch.equal(model.whisper.frontend.filters, fresh.filters)
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == sum(
        p.numel() for p in [*model.head.parameters(), *model.lm_head.parameters()])
    features = torch.randn(1, 80, 3000)  # transformers' encoder takes exactly 30 s
    with torch.no_grad():
        expected = reference.model.encoder(features).last_hidden_state
        x = model.whisper.encoder.embed(features)
        for layer in model.whisper.encoder.layers:
            x = layer(x, None)
        ours = model.whisper.encoder.layer_norm(x)
    assert torch.allclose(ours, expected, atol=1e-5)


def test_the_ctranslate2_reader_matches_ctranslate2_s_own_encoder(hf_whisper, tmp_path):
    ctranslate2 = pytest.importorskip("ctranslate2", reason="ctranslate2 (the dev extra) is not installed")
    folder, _ = hf_whisper
    ct2_dir = ctranslate2.converters.TransformersConverter(str(folder)).convert(
        str(tmp_path / "ct2"), quantization="float16")
    variables = read_ctranslate2(tmp_path / "ct2" / "model.bin")
    assert variables["encoder/conv1/weight"].dtype == np.float16
    model = load_model(import_whisper(ct2_dir, tmp_path / "ctc", head_dim=32))
    features = np.random.default_rng(1).standard_normal((1, 80, 100)).astype(np.float32)
    expected = np.array(ctranslate2.models.Whisper(ct2_dir, compute_type="float32").encode(
        ctranslate2.StorageView.from_array(features)))
    with torch.no_grad():
        x = model.whisper.encoder.embed(torch.from_numpy(features))
        for layer in model.whisper.encoder.layers:
            x = layer(x, None)
        ours = model.whisper.encoder.layer_norm(x).numpy()
    assert np.linalg.norm(ours - expected) / np.linalg.norm(expected) < 1e-5


def test_bad_sources_get_one_line_errors(tmp_path):
    with pytest.raises(ModelError, match="neither a folder"):
        import_whisper(tmp_path / "missing", tmp_path / "out")
    (tmp_path / "model.bin").write_bytes(b"\x06\x00\x00\x00\x05\x00Wh")
    with pytest.raises(ModelError, match="truncated"):
        import_whisper(tmp_path, tmp_path / "out")
    other = tmp_path / "other"
    other.mkdir()
    (other / "config.json").write_text('{"model_type": "wav2vec2"}')
    with pytest.raises(ModelError, match="not a Whisper checkpoint"):
        import_whisper(other, tmp_path / "out")


def test_the_fixed_rule_front_end_of_a_window_equals_the_offline_one_away_from_its_edges():
    """What streaming needs: a window cut at a frame boundary gives the offline log-mel frames, except
    the 2 at each edge that see the window's reflect padding (the utterance rule fails this)."""
    rng = np.random.default_rng(3)
    level = np.where(np.arange(32000) < 16000, 3e-4, 0.5)  # a quiet second, then a loud one
    audio = torch.from_numpy((rng.standard_normal(32000) * level).astype(np.float32))
    start, end = 160 * 10, 160 * 90  # frames 10..89 of the offline log-mel: the quiet part
    for rule, equal in (("fixed", True), ("utterance", False)):
        front = WhisperForCTC(WhisperCTCConfig(**TINY, mel_normalization=rule)).whisper.frontend
        with torch.no_grad():
            offline = front(audio[None])[0, :, 10:90]
            window = front(audio[None, start:end])[0]
        interior = (window[:, 2:-2] - offline[:, 2:-2]).abs().max()
        assert (interior < 1e-4) == equal, (rule, float(interior))


def test_train_fp_trains_the_head_of_an_imported_encoder_and_leaves_the_encoder_as_it_was(
        hf_whisper, tiny_corpus, tmp_path):
    from speechmpq.cli import main

    init = import_whisper(hf_whisper[0], tmp_path / "init", head_dim=32)
    assert main(["train-fp", "--data", str(tiny_corpus / "train"), "--dev", str(tiny_corpus / "dev"),
                 "--out", str(tmp_path / "run"), "--init-from", str(init), "--steps", "3",
                 "--warmup-steps", "1", "--eval-every", "3", "--batch-seconds", "16",
                 "--max-utterance-seconds", "16", "--workers", "0", "--quiet"]) == 0
    before, after = load_model(init), load_model(tmp_path / "run" / "final")
    assert type(after).__name__ == "WhisperForCTC"
    for (name, old), new in zip(before.state_dict().items(), after.state_dict().values(), strict=True):
        assert torch.equal(old, new) == name.startswith("whisper."), name


def test_train_fp_unfreezes_the_top_layer_and_distils_from_a_teacher(hf_whisper, tiny_corpus, tmp_path):
    from speechmpq.cli import main

    init = import_whisper(hf_whisper[0], tmp_path / "init", head_dim=32)
    assert main(["train-fp", "--data", str(tiny_corpus / "train"), "--out", str(tmp_path / "run"),
                 "--init-from", str(init), "--steps", "2", "--warmup-steps", "1", "--batch-seconds", "16",
                 "--max-utterance-seconds", "16", "--workers", "0", "--quiet",
                 "--trainable-encoder-layers", "1", "--teacher", str(init), "--kl-weight", "1.0"]) == 0
    before, after = load_model(init), load_model(tmp_path / "run" / "final")
    assert after.config.trainable_encoder_layers == 1
    changed = {name for (name, old), new in zip(before.state_dict().items(), after.state_dict().values(),
                                                strict=True) if not torch.equal(old, new)}
    assert any(n.startswith("whisper.encoder.layers.1.") for n in changed)
    assert not any(n.startswith(("whisper.encoder.layers.0.", "whisper.encoder.conv")) for n in changed)
    assert main(["train-fp", "--data", str(tiny_corpus / "train"), "--out", str(tmp_path / "bad"),
                 "--init-from", str(init), "--steps", "2", "--warmup-steps", "1", "--kl-weight", "1.0"]) == 1


def test_the_imported_encoder_is_quantized_exported_and_run_like_the_wav2vec2_family(hf_whisper, tiny_corpus,
                                                                                      tmp_path):
    """One-stage MPQ searches the encoder's q/k/v/out/fc1/fc2 (not the conv head), the export stores each
    layer at its bits, and the runtime's offline transcript of a clip equals PyTorch's greedy one."""
    from speechmpq.audio import load_audio
    from speechmpq.cli import main
    from speechmpq.datasets import read_dataset
    from speechmpq.runtime import Recognizer, RecognizerConfig, StreamingConfig
    from speechmpq.train.evaluate import transcribe_torch

    init = import_whisper(hf_whisper[0], tmp_path / "init", head_dim=32)
    assert main(["quantize", "--model", str(init), "--data", str(tiny_corpus / "train"),
                 "--out", str(tmp_path / "q"), "--target-bits", "4", "--steps", "2", "--pass2-steps", "0",
                 "--batch-seconds", "16", "--max-utterance-seconds", "16", "--workers", "0",
                 "--quiet"]) == 0
    plan = json.loads((tmp_path / "q" / "model" / "bitplan.json").read_text())
    kinds = {name.split(".")[-1] for name in plan["layers"]}
    assert kinds == {"q_proj", "k_proj", "v_proj", "out_proj", "intermediate_dense", "output_dense"}
    assert len(plan["layers"]) == 2 * 6 and all(".encoder.layers." in name for name in plan["layers"])
    assert load_model(tmp_path / "q" / "model").config.trainable_encoder_layers == 0
    assert main(["export", str(tmp_path / "q" / "model"), "--out", str(tmp_path / "q.onnx"), "--quiet"]) == 0
    clip = read_dataset(tiny_corpus / "test-clean")[0]
    recognizer = Recognizer(tmp_path / "q.onnx", RecognizerConfig(streaming=StreamingConfig(chunk_ms=0)))
    assert recognizer.info.bitplan is not None and recognizer.info.frontend_cache == "none"
    assert (recognizer.info.chunk_ms, recognizer.info.right_context_ms) == (1280, 1280)  # the family's window
    text = recognizer.transcribe(load_audio(clip.path), 16000)
    assert text == transcribe_torch(load_model(tmp_path / "q" / "model"), [clip], progress=False)[0]


def test_spec_augment_masks_only_in_training_and_only_where_asked():
    model = WhisperForCTC(WhisperCTCConfig(**TINY, apply_spec_augment=True, mel_time_mask_frames=20))
    samples = torch.randn(1, 16000) * 0.1
    with torch.no_grad():
        clean = model.whisper.frontend(samples)
        model.eval()
        assert torch.equal(model(samples).logits, model(samples).logits)  # no masks in eval
        from speechmpq.train.whisper_ctc import spec_augment

        torch.manual_seed(1)
        masked = spec_augment(clean, model.config)
    changed = masked != clean
    floor = (model.config.mel_ceiling - 8 + 4) / 4
    assert changed.any() and torch.all(masked[changed] == floor)
    assert changed.float().mean() < 0.5
