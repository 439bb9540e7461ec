"""Fixtures of the training-stage tests: a tiny random Hugging Face Whisper checkpoint."""

import pytest
import torch


@pytest.fixture(scope="session")
def hf_whisper(tmp_path_factory):
    """A tiny random Hugging Face Whisper checkpoint (2 encoder layers, d 64, 30 s of positions)."""
    import transformers

    config = transformers.WhisperConfig(
        vocab_size=300, num_mel_bins=80, d_model=64, encoder_layers=2, encoder_attention_heads=2,
        decoder_layers=1, decoder_attention_heads=2, encoder_ffn_dim=128, decoder_ffn_dim=128,
        max_source_positions=1500, max_target_positions=32, decoder_start_token_id=1, pad_token_id=0,
        bos_token_id=1, eos_token_id=2)  # fmt: skip
    torch.manual_seed(0)
    model = transformers.WhisperForConditionalGeneration(config).eval()
    folder = tmp_path_factory.mktemp("hf-whisper")
    model.save_pretrained(folder)
    return folder, model
