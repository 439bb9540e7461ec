import numpy as np
import pytest
import soundfile

from speechmpq.audio import load_audio
from speechmpq.errors import AudioError


def test_stereo_is_downmixed_and_rate_resampled(tmp_path):
    t = np.arange(44100) / 44100
    left = 0.5 * np.sin(2 * np.pi * 440 * t)
    soundfile.write(tmp_path / "s.wav", np.stack([left, left], axis=1), 44100)
    audio = load_audio(tmp_path / "s.wav")
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert abs(audio.shape[0] - 16000) <= 1
    assert np.abs(audio).max() == pytest.approx(0.5, abs=0.02)


def test_integer_pcm_is_scaled(tmp_path):
    soundfile.write(tmp_path / "i.flac", np.full(1600, 0.25), 16000, subtype="PCM_24")
    assert load_audio(tmp_path / "i.flac") == pytest.approx(np.full(1600, 0.25), abs=1e-4)


@pytest.mark.parametrize(("make", "message"), [
    (lambda p: p.write_bytes(b""), "cannot read audio"),
    (lambda p: p.write_text("this is not audio at all"), "cannot read audio"),
    (lambda p: p.mkdir(), "is a directory"),
    (lambda p: None, "no such file"),
])  # fmt: skip
def test_unreadable_audio_raises_clear_error_naming_file(tmp_path, make, message):
    path = tmp_path / "bad.flac"
    make(path)
    with pytest.raises(AudioError, match=message) as info:
        load_audio(path)
    assert str(path) in str(info.value)


def test_truncated_flac_is_refused(tmp_path):
    soundfile.write(tmp_path / "ok.flac", np.random.default_rng(0).uniform(-0.5, 0.5, 16000), 16000)
    data = (tmp_path / "ok.flac").read_bytes()
    (tmp_path / "cut.flac").write_bytes(data[:100])
    with pytest.raises(AudioError):
        load_audio(tmp_path / "cut.flac")


def test_empty_signal_and_nan_are_refused(tmp_path):
    soundfile.write(tmp_path / "empty.wav", np.zeros(0), 16000)
    with pytest.raises(AudioError, match="no samples"):
        load_audio(tmp_path / "empty.wav")
    soundfile.write(tmp_path / "nan.wav", np.full(100, np.nan, dtype=np.float32), 16000,
                    subtype="FLOAT")
    with pytest.raises(AudioError, match="NaN"):
        load_audio(tmp_path / "nan.wav")


def test_iter_audio_streams_the_same_samples_as_load_audio(tmp_path):
    import soundfile

    from speechmpq.audio import iter_audio

    rng = np.random.default_rng(0)
    for rate, channels in ((16000, 1), (44100, 2), (8000, 1)):
        path = tmp_path / f"a{rate}.wav"
        soundfile.write(path, rng.uniform(-0.5, 0.5, (int(rate * 2.3), channels)).astype(np.float32), rate)
        whole = load_audio(path)
        streamed = np.concatenate(list(iter_audio(path, block_seconds=0.37)))
        assert abs(streamed.size - whole.size) <= 2  # the stream resampler's edge handling
        n = min(streamed.size, whole.size)
        assert np.abs(streamed[100:n - 100] - whole[100:n - 100]).max() < 2e-2


def test_iter_audio_refuses_like_load_audio(tmp_path):
    import soundfile

    from speechmpq.audio import iter_audio

    one = tmp_path / "one.wav"
    soundfile.write(one, np.zeros(1, np.float32), 44100)
    nan = tmp_path / "nan.wav"
    soundfile.write(nan, np.array([0.1, np.nan] * 100, np.float32), 16000, subtype="FLOAT")
    for path, message in ((one, "too short"), (nan, "NaN"), (tmp_path, "directory"),
                          (tmp_path / "missing.wav", "no such file")):
        with pytest.raises(AudioError, match=message):
            list(iter_audio(path))
