"""``speechmpq serve`` end to end in a real headless Chromium, plus the server's WebSocket protocol.

The browser test feeds Chromium's fake microphone from a synthesized WAV
(``--use-file-for-fake-audio-capture``), clicks Start, waits for the file to play, clicks Stop and
compares the final transcript on the page with the offline transcript of the same file. It needs
Debian's ``chromium`` + ``chromium-driver`` (``.ci/run`` installs them) and is skipped with a reason
where they are missing. Set SPEECHMPQ_SCREENSHOT_DIR to keep the page screenshots.
"""

import asyncio
import functools
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import soundfile

from speechmpq.audio import load_audio
from speechmpq.datasets import read_dataset
from speechmpq.runtime import DecoderConfig, Recognizer, RecognizerConfig, StreamingConfig

aiohttp = pytest.importorskip("aiohttp")
MODEL = Path(__file__).resolve().parents[2] / "models" / "demo-mpq.onnx"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def server():
    port = _free_port()
    process = subprocess.Popen([sys.executable, "-m", "speechmpq", "serve", "--model", str(MODEL),
                                "--port", str(port), "--threads", "1"],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            urllib.request.urlopen(url + "/api/model", timeout=1).read()
            break
        except OSError:
            if process.poll() is not None:
                raise AssertionError("server exited: " + process.stdout.read()) from None
            time.sleep(0.1)
    yield url
    process.terminate()
    process.wait(timeout=10)


@pytest.fixture(scope="module")
def padded_wavs(tiny_corpus, tmp_path_factory):
    """Two synthesized utterances as 16-bit WAV with 0.5 s of silence before and 1.5 s after."""
    out = tmp_path_factory.mktemp("wav")
    paths = []
    for index, utterance in enumerate(sorted(read_dataset(tiny_corpus / "test-clean"),
                                             key=lambda u: -len(u.transcript))[:2]):
        samples = load_audio(utterance.path)
        padded = np.concatenate([np.zeros(8000, np.float32), samples, np.zeros(24000, np.float32)])
        path = out / f"utterance{index}.wav"
        soundfile.write(path, padded, 16000, subtype="PCM_16")
        paths.append(path)
    return paths


@functools.cache
def _server_default() -> Recognizer:
    """What ``speechmpq serve`` builds by default (``--decoder auto``: the LM beside the model)."""
    return Recognizer(MODEL, RecognizerConfig(decoder=DecoderConfig("auto")))


def _offline(path: Path) -> str:
    recognizer = Recognizer(_server_default().model, RecognizerConfig(
        streaming=StreamingConfig(chunk_ms=0), decoder=DecoderConfig("auto")))
    return recognizer.transcribe(load_audio(path), 16000)


@functools.cache
def _greedy_recognizer() -> Recognizer:
    return Recognizer(_server_default().model, RecognizerConfig(decoder=DecoderConfig("greedy")))


def _acoustic_cer(file: Path, sent: np.ndarray) -> float:
    """CER between the greedy (character-level) streaming transcripts of the file and of the PCM
    the page sent: how close the microphone path's audio is, as the acoustic model hears it. The
    LM decoder's words magnify small acoustic differences (a changed letter becomes a changed
    word: measured CER 0.41 between the LM transcripts of one such take), so it does not judge
    the audio path."""
    import jiwer

    greedy = _greedy_recognizer()
    int16 = (np.clip(load_audio(file), -1, 1) * 32767).round() / 32768.0
    return jiwer.cer(greedy.transcribe(int16.astype(np.float32), 16000),
                     greedy.transcribe((sent / 32768.0).astype(np.float32), 16000))


def test_model_endpoint_describes_the_bit_plan(server):
    model = json.loads(urllib.request.urlopen(server + "/api/model").read())
    assert model["name"] == "demo-mpq.onnx" and model["weights"] == "mpq"
    assert len(model["layers"]) == 36 and {layer["bits"] for layer in model["layers"]} <= {2, 4, 8}
    assert abs(np.mean([layer["bits"] for layer in model["layers"]]) - model["average_bits"]) < 0.5
    names = [layer["name"] for layer in model["layers"]]
    assert names.index("wav2vec2.encoder.layers.1.attention.k_proj") < names.index(
        "wav2vec2.encoder.layers.2.attention.k_proj")


def test_static_files_only(server):
    for path in ("/static/../server.py", "/static/%2e%2e/server.py", "/static/nothing.js"):
        with pytest.raises(urllib.error.HTTPError) as error:
            urllib.request.urlopen(server + path)
        assert error.value.code in (403, 404)
    assert b"AudioWorkletProcessor" in urllib.request.urlopen(server + "/static/worklet.js").read()


async def _stream_over_websocket(url: str, path: Path) -> dict:
    samples = load_audio(path)
    pcm = (np.clip(samples, -1, 1) * 32767).round().astype("<i2")
    async with aiohttp.ClientSession() as client, client.ws_connect(url.replace("http", "ws") + "/ws") as ws:
        assert (await ws.receive_json())["type"] == "ready"
        partials = 0
        for start in range(0, pcm.size, 1600):
            await ws.send_bytes(pcm[start: start + 1600].tobytes())
        await ws.send_str(json.dumps({"type": "end"}))
        while True:
            message = await ws.receive_json(timeout=60)
            if message["type"] == "final":
                return {**message, "partials": partials}
            assert message["type"] == "partial", message
            partials += 1


def test_concurrent_websocket_streams_are_independent(server, padded_wavs):
    """Two tabs at once = two streams on one recognizer: each gets its own file's transcript."""
    async def both():
        return await asyncio.gather(*(_stream_over_websocket(server, path) for path in padded_wavs))

    results = asyncio.run(both())
    for path, result in zip(padded_wavs, results, strict=True):
        int16 = (np.clip(load_audio(path), -1, 1) * 32767).round() / 32768.0
        expected = _server_default().transcribe(int16.astype(np.float32), 16000)
        assert result["text"] == expected and result["partials"] > 0
        assert result["chunks"] > 1 and result["peak_rss_mib"] > 0


def test_bad_frames_get_an_error_event_and_the_stream_goes_on(server, padded_wavs):
    async def run():
        url = server.replace("http", "ws") + "/ws"
        async with aiohttp.ClientSession() as client, client.ws_connect(url) as ws:
            await ws.receive_json()
            await ws.send_bytes(b"\x01\x02\x03")  # odd length: not 16-bit PCM
            first = await ws.receive_json()
            await ws.send_str("not json")
            second = await ws.receive_json()
            await ws.send_bytes(np.zeros(16000, "<i2").tobytes())
            await ws.send_str(json.dumps({"type": "end"}))
            while (message := await ws.receive_json(timeout=60))["type"] != "final":
                pass
            return first, second, message

    first, second, final = asyncio.run(run())
    assert first == {"type": "error", "message": "PCM frames must be 16-bit"}
    assert second["type"] == "error" and final["type"] == "final"


SENT_PCM = """
const parts = window.speechmpq.sent, total = parts.reduce((n, p) => n + p.length, 0);
const all = new Int16Array(total); let at = 0; for (const p of parts) { all.set(p, at); at += p.length; }
const bytes = new Uint8Array(all.buffer); let text = "";
for (let i = 0; i < bytes.length; i += 8192)
  text += String.fromCharCode.apply(null, bytes.subarray(i, i + 8192));
return btoa(text);
"""


def _sent_pcm(driver) -> np.ndarray:
    import base64

    return np.frombuffer(base64.b64decode(driver.execute_script(SENT_PCM)), "<i2")


def _streaming(samples: np.ndarray) -> str:
    """What ``speechmpq stream`` gives for these samples (the server's config: the model's defaults)."""
    return _server_default().transcribe(samples.astype(np.float32), 16000)


def _microphone_take(driver, wait, seconds: float, screenshot=None) -> tuple[str, np.ndarray, str]:
    """Start, let the fake microphone play the file, Stop; (final text on the page, PCM it sent,
    the status line while listening)."""
    from selenium.webdriver.common.by import By

    finals = len(driver.execute_script("return window.speechmpq.finals"))
    driver.find_element(By.ID, "start").click()
    wait.until(lambda d: d.execute_script("return window.speechmpq.sentSeconds") >= seconds / 2)
    listening = driver.find_element(By.ID, "status").text
    if screenshot:
        driver.save_screenshot(str(screenshot))  # mid-utterance
    wait.until(lambda d: d.execute_script("return window.speechmpq.sentSeconds") >= seconds + 0.3)
    partial = driver.execute_script("return document.getElementById('stable').textContent + "
                                    "document.getElementById('tentative').textContent")
    driver.find_element(By.ID, "stop").click()
    wait.until(lambda d: len(d.execute_script("return window.speechmpq.finals")) == finals + 1)
    assert driver.execute_script("return window.speechmpq.errors") == []
    assert partial  # partials appeared while the audio played
    sent = _sent_pcm(driver)
    assert sent.size >= 16000 * seconds
    return driver.find_elements(By.CSS_SELECTOR, "#finals li")[-1].text, sent, listening


@pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER), reason="needs Debian's chromium and chromium-driver")
def test_browser_microphone_and_dropped_file_end_to_end(server, padded_wavs, tmp_path):
    """Microphone (Chromium's fake capture playing a WAV) and a chosen file, through the page.

    The dropped file reaches the server bit for bit, so the page must show exactly what
    ``speechmpq stream`` gives for the file. The microphone path resamples (48 kHz capture -> 16 kHz)
    and starts at an arbitrary sample, i.e. at an arbitrary phase of the 20 ms frame grid; the demo
    model's transcript is not invariant to that (measured: 0 of 12 random shifts of either bundled
    clip keep it), so the page must show exactly the transcript of the PCM it sent, and what the
    acoustic model hears in that PCM (greedy transcript) must be close to what it hears in the file.
    """
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    wav = padded_wavs[0]
    seconds = soundfile.info(wav).duration
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1100,900",
                 "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                 f"--use-file-for-fake-audio-capture={wav}%noloop",
                 "--autoplay-policy=no-user-gesture-required"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    try:
        driver.get(server + "/?record=1")
        wait = WebDriverWait(driver, 60)
        wait.until(lambda d: "mpq" in d.find_element(By.ID, "model").text)
        assert len(driver.find_elements(By.CSS_SELECTOR, "#bitchart rect.bar")) == 36
        offline = _offline(wav)
        partial_png = tmp_path / "browser_demo_partial.png"
        shown, sent, listening = _microphone_take(driver, wait, seconds, partial_png)
        assert "(16000 Hz -> 16 kHz)" in listening  # Chromium resamples into a 16 kHz context
        assert shown == _streaming(sent / 32768.0)
        cer = _acoustic_cer(wav, sent)
        print(f"microphone: page {shown!r}; file offline {offline!r}; greedy CER {cer:.3f}")
        assert cer < 0.25

        file_path = padded_wavs[1]
        driver.find_element(By.ID, "file").send_keys(str(file_path))
        wait.until(lambda d: len(d.execute_script("return window.speechmpq.finals")) == 2)
        shown = driver.find_elements(By.CSS_SELECTOR, "#finals li")[-1].text
        file_pcm = soundfile.read(file_path, dtype="int16")[0]
        assert np.array_equal(_sent_pcm(driver), file_pcm)  # bit for bit
        assert shown == _streaming(file_pcm / 32768.0)
        print(f"file: page {shown!r}; offline {_offline(file_path)!r}")
        assert float(driver.find_element(By.ID, "rtf").text) > 0
        driver.save_screenshot(str(tmp_path / "browser_demo.png"))

        # the same microphone at the device's own rate: the page's AudioWorklet downsamples
        driver.get(server + "/?record=1&rate=native")
        wait.until(lambda d: "mpq" in d.find_element(By.ID, "model").text)
        shown, sent, listening = _microphone_take(driver, wait, seconds)
        assert "listening" in listening and "(16000 Hz" not in listening
        assert shown == _streaming(sent / 32768.0)
        cer = _acoustic_cer(wav, sent)
        print(f"microphone at the device rate, downsampled in the worklet: page {shown!r}; "
              f"greedy CER {cer:.3f}")
        assert cer < 0.25
    finally:
        driver.quit()
    keep = os.environ.get("SPEECHMPQ_SCREENSHOT_DIR")
    if keep:
        for name in ("browser_demo.png", "browser_demo_partial.png"):
            shutil.copy(tmp_path / name, Path(keep) / name)


def test_serve_on_a_busy_port_is_one_line(capsys):
    from speechmpq.cli import main

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        assert main(["serve", "--model", str(MODEL), "--port", str(busy.getsockname()[1])]) == 1
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in err


def test_ctrl_c_with_a_stream_open_stops_cleanly(padded_wavs):
    """SIGINT while a tab is streaming: the server closes the stream and exits, no traceback."""
    import signal

    port = _free_port()
    process = subprocess.Popen([sys.executable, "-m", "speechmpq", "serve", "--model", str(MODEL),
                                "--port", str(port), "--threads", "1"],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"ws://127.0.0.1:{port}/ws"

    async def stream_until_closed():
        for _ in range(300):
            try:
                async with aiohttp.ClientSession() as client, client.ws_connect(url) as ws:
                    await ws.receive_json()
                    await ws.send_bytes(np.zeros(32000, "<i2").tobytes())
                    process.send_signal(signal.SIGINT)
                    while (message := await ws.receive(timeout=30)).type not in (
                            aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING):
                        pass
                    return message.type
            except aiohttp.ClientConnectionError:
                await asyncio.sleep(0.1)
        raise AssertionError("server never accepted a connection")

    asyncio.run(stream_until_closed())
    output = process.communicate(timeout=30)[0]
    assert process.returncode is not None and "Traceback" not in output, output


def test_serve_warns_when_exposed(monkeypatch, capsys):
    from aiohttp import web

    from speechmpq.cli import main

    monkeypatch.setattr(web, "run_app", lambda *args, **kwargs: None)  # do not actually listen
    assert main(["serve", "--model", str(MODEL), "--host", "0.0.0.0"]) == 0
    assert "warning: listening on 0.0.0.0" in capsys.readouterr().err
