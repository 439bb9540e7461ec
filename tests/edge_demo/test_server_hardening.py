"""The browser demo server's limits, on an in-process server (aiohttp test utilities)."""

import asyncio
import json
from pathlib import Path

import numpy as np
import pytest

aiohttp = pytest.importorskip("aiohttp")
from aiohttp.test_utils import TestClient, TestServer  # noqa: E402

from speechmpq.edge_demo.server import DemoServer  # noqa: E402

MODEL = Path(__file__).resolve().parents[2] / "models" / "demo-mpq.onnx"


def _with_client(test, **limits):
    async def run():
        server = DemoServer(MODEL, **limits)
        async with TestClient(TestServer(server.app())) as client:
            return await test(client, server)

    return asyncio.run(run())


def test_cross_site_origin_is_refused_same_origin_and_no_origin_are_served():
    async def test(client, server):
        host = f"{client.host}:{client.port}"
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await client.ws_connect("/ws", headers={"Origin": "https://evil.example"})
        async with client.ws_connect("/ws", headers={"Origin": f"http://{host}"}) as ws:
            same = (await ws.receive_json())["type"]
        async with client.ws_connect("/ws") as ws:  # command-line clients send no Origin
            plain = (await ws.receive_json())["type"]
        return refused.value.status, same, plain

    assert _with_client(test) == (403, "ready", "ready")


def test_idle_connection_is_closed():
    async def test(client, server):
        async with client.ws_connect("/ws") as ws:
            await ws.receive_json()
            message = await ws.receive_json(timeout=10)
            closing = await ws.receive(timeout=10)
            return message, closing.type

    message, closing = _with_client(test, idle_seconds=0.5)
    assert message["type"] == "error" and "idle" in message["message"]
    assert closing in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)


def test_audio_per_connection_is_capped():
    async def test(client, server):
        async with client.ws_connect("/ws") as ws:
            await ws.receive_json()
            for _ in range(3):
                await ws.send_bytes(np.zeros(8000, "<i2").tobytes())  # 0.5 s each
            replies = []
            while (message := await ws.receive(timeout=30)).type == aiohttp.WSMsgType.TEXT:
                replies.append(json.loads(message.data))
            return replies

    replies = _with_client(test, max_stream_seconds=1.0)
    assert replies and replies[-1]["type"] == "error" and "too long" in replies[-1]["message"]


def test_stream_limit_and_oversized_messages():
    async def test(client, server):
        async with client.ws_connect("/ws") as first:
            await first.receive_json()
            async with client.ws_connect("/ws") as second:
                busy = await second.receive_json()
            await first.send_bytes(b"\0" * (2 << 20))  # 2 MiB > the 1 MiB message cap
            closed = await first.receive(timeout=10)
        return busy, closed.type

    busy, closed = _with_client(test, max_streams=1)
    assert busy["type"] == "error" and "busy" in busy["message"]
    assert closed in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR)


def test_a_failing_model_call_is_an_error_event_and_the_stream_recovers():
    async def test(client, server):
        server_model = server.recognizer.model
        method = "logits_cached" if server.recognizer.frontend_cache else "logits"  # what a window calls
        real, calls = getattr(server_model, method), []

        def flaky(*arguments):
            calls.append(1)
            if len(calls) == 1:
                raise RuntimeError("simulated onnxruntime failure")
            return real(*arguments)

        setattr(server_model, method, flaky)
        async with client.ws_connect("/ws") as ws:
            await ws.receive_json()
            await ws.send_bytes(np.zeros(16000 * 5, "<i2").tobytes())
            first = await ws.receive_json(timeout=30)
            await ws.send_str(json.dumps({"type": "end"}))
            while (message := await ws.receive_json(timeout=30))["type"] != "final":
                pass
        return first, message

    first, final = _with_client(test)
    assert first["type"] == "error" and "simulated" in first["message"]
    assert final["type"] == "final" and final["chunks"] >= 1


@pytest.mark.parametrize("batch", [True, False])
def test_concurrent_streams_get_the_transcripts_of_decoding_alone(batch):
    """Four tabs at once: each final transcript equals the recognizer's own for that audio; batched,
    fewer model calls than windows (the tabs shared calls); per-chunk latencies come back."""
    from speechmpq.audio import load_audio
    from speechmpq.runtime import Recognizer

    clips = sorted((MODEL.parents[1] / "edge_demo" / "clips").glob("*.flac"))
    audio = [load_audio(c) for c in clips] * 2

    async def one(client, samples, piece):
        async with client.ws_connect("/ws") as ws:
            await ws.receive_json()
            pcm = (np.clip(samples, -1, 1) * 32767).astype("<i2")
            for start in range(0, pcm.size, piece):
                await ws.send_bytes(pcm[start: start + piece].tobytes())
            await ws.send_str(json.dumps({"type": "end"}))
            while (reply := await ws.receive_json(timeout=60))["type"] != "final":
                assert reply["type"] == "partial"
            return reply

    async def test(client, server):
        replies = await asyncio.gather(*[one(client, s, 1600 * (1 + i % 3)) for i, s in enumerate(audio)])
        return replies, server.batcher

    replies, batcher = _with_client(test, batch=batch)
    heard = [(np.clip(s, -1, 1) * 32767).astype("<i2") / 32768.0 for s in audio]  # 16-bit PCM
    expected = [Recognizer(MODEL).transcribe(samples, 16000) for samples in heard]
    assert [r["text"] for r in replies] == expected
    assert all(len(r["chunk_latency_ms"]) == r["chunks"] > 0 for r in replies)
    if batch:
        assert batcher.calls < sum(r["chunks"] for r in replies)
