"""``speechmpq serve``: the browser demo — one page, one WebSocket per stream, one shared recognizer.

    GET  /            the page (static files packaged with speechmpq.edge_demo)
    GET  /api/model   the model's name, size, weights and per-layer bit plan (from its metadata)
    WS   /ws          one stream: binary frames of 16-bit little-endian mono PCM at the model's rate
                      (16 kHz); text frames {"type": "end"} (input finished: final result) and
                      {"type": "reset"}; the server answers {"type": "ready"}, {"type": "partial",
                      "stable", "tentative", ...stats}, {"type": "final", "text", ...stats} and
                      {"type": "error", "message"}.

Every connection gets its own ``Stream`` on the one ``Recognizer`` (one onnxruntime session); model
calls run in a thread pool so the event loop keeps serving the other tabs. By default the streams
are decoded in batches (``edge_demo/sessions.py``: the ready windows of all tabs share model calls);
``batch=False`` runs each connection's calls alone. Binds 127.0.0.1 unless ``--host`` says otherwise.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from speechmpq.edge_demo.sessions import Batcher, StreamSession
from speechmpq.errors import SpeechmpqError
from speechmpq.runtime import Recognizer, RecognizerConfig

STATIC = Path(__file__).resolve().parent / "static"
MAX_MESSAGE_BYTES = 1 << 20  # one WebSocket message: ~32 s of 16 kHz int16
MAX_STREAM_SECONDS = 3600.0  # audio per connection before the stream is closed
IDLE_SECONDS = 60.0  # a connection that sends nothing this long is closed


def _import_aiohttp():
    try:
        from aiohttp import WSMsgType, web
    except ImportError:
        raise SpeechmpqError("speechmpq serve needs the optional aiohttp package: "
                             "pip install 'speechmpq[serve]'") from None
    return web, WSMsgType


def _same_origin(origin: str, host: str) -> bool:
    """The page's origin (scheme://host[:port]) names the host the request was sent to."""
    from urllib.parse import urlsplit

    parts = urlsplit(origin)
    return parts.scheme in ("http", "https") and parts.netloc.lower() == host.lower()


def _natural(name: str) -> list:
    """Layer names in model order: encoder.layers.2 before encoder.layers.10."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def model_summary(path: Path, recognizer: Recognizer) -> dict:
    info, g, rate = recognizer.info, recognizer.geometry, recognizer.info.sample_rate
    layers = []
    if info.bitplan:
        ordered = sorted(info.bitplan["layers"].items(), key=lambda item: _natural(item[0]))
        layers = [{"name": name, "bits": layer["bits"], "shape": layer.get("shape")}
                  for name, layer in ordered]
    return {"name": path.name, "bytes": os.path.getsize(path), "weights": info.weights,
            "average_bits": info.bitplan["average_bits"] if info.bitplan else None,
            "candidates": info.bitplan.get("candidates") if info.bitplan else None, "layers": layers,
            "sample_rate": rate, "chunk_ms": 1000 * g.chunk // rate, "left_ms": 1000 * g.left // rate,
            "right_ms": 1000 * g.right // rate, "source_model_type": info.source_model_type,
            "decoder": recognizer.decoder.describe(),
            "kernels": recognizer.model.kernels.summary() if hasattr(recognizer.model, "kernels") else None,
            "frontend_cache": recognizer.frontend_cache_note}


class DemoServer:
    def __init__(self, model: str | Path, config: RecognizerConfig | None = None, workers: int = 2,
                 max_streams: int = 16, idle_seconds: float = IDLE_SECONDS,
                 max_stream_seconds: float = MAX_STREAM_SECONDS, batch: bool = True):
        self.model_path = Path(model)
        self.recognizer = Recognizer(self.model_path, config)
        self.summary = model_summary(self.model_path, self.recognizer)
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="decode")
        # batched: one decoding round at a time owns every stream (its own one-thread pool)
        self.batcher = (Batcher(self.recognizer, ThreadPoolExecutor(1, thread_name_prefix="batch"))
                        if batch else None)
        self.max_streams = max_streams
        self.idle_seconds, self.max_stream_seconds = idle_seconds, max_stream_seconds
        self.active = 0
        self.sockets: set = set()
        self.stopping = False

    def app(self):
        web, _ = _import_aiohttp()
        app = web.Application(client_max_size=MAX_MESSAGE_BYTES)
        app.router.add_get("/", self._index)
        app.router.add_get("/api/model", self._model)
        app.router.add_get("/ws", self._websocket)
        app.router.add_static("/static/", STATIC, follow_symlinks=False)
        app.on_shutdown.append(self._shutdown)
        return app

    async def _shutdown(self, app) -> None:
        """Ctrl-C: close every open stream (1001 going away) before the decode pool goes."""
        from aiohttp import WSCloseCode

        self.stopping = True
        for socket in list(self.sockets):
            await socket.close(code=WSCloseCode.GOING_AWAY, message=b"server shutting down")
        self.pool.shutdown(wait=False, cancel_futures=True)
        if self.batcher is not None:
            self.batcher.pool.shutdown(wait=False, cancel_futures=True)

    async def _index(self, request):
        web, _ = _import_aiohttp()
        return web.FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-store"})

    async def _model(self, request):
        web, _ = _import_aiohttp()
        return web.json_response(self.summary)

    async def _websocket(self, request):
        web, WSMsgType = _import_aiohttp()
        origin = request.headers.get("Origin")
        if origin is not None and not _same_origin(origin, request.host):
            # a page from another site must not drive this server through the visitor's browser
            return web.Response(status=403, text=f"origin {origin} not allowed\n")
        socket = web.WebSocketResponse(max_msg_size=MAX_MESSAGE_BYTES, heartbeat=30)
        await socket.prepare(request)
        if self.active >= self.max_streams:
            await socket.send_json({"type": "error", "message": f"server busy ({self.max_streams} streams)"})
            await socket.close()
            return socket
        self.active += 1
        self.sockets.add(socket)
        try:
            await self._serve_stream(socket, WSMsgType)
        except (ConnectionError, asyncio.CancelledError):
            pass  # the tab went away mid-reply, or the server is stopping
        finally:
            self.active -= 1
            self.sockets.discard(socket)
        return socket

    async def _serve_stream(self, socket, WSMsgType) -> None:
        session = StreamSession(self.recognizer)
        loop = asyncio.get_running_loop()
        await socket.send_json({"type": "ready", "sample_rate": self.recognizer.info.sample_rate})
        while True:
            try:
                message = await socket.receive(timeout=self.idle_seconds)
            except asyncio.TimeoutError:
                await socket.send_json({"type": "error", "message": f"idle for {self.idle_seconds:g} s"})
                await socket.close()
                return
            if message.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED):
                return
            if message.type == WSMsgType.BINARY:
                if len(message.data) % 2:
                    await socket.send_json({"type": "error", "message": "PCM frames must be 16-bit"})
                    continue
                if session.audio_seconds + len(message.data) / 2 / session.rate > self.max_stream_seconds:
                    await socket.send_json({"type": "error", "message": "stream too long "
                                            f"(at most {self.max_stream_seconds:g} s per connection)"})
                    await socket.close()
                    return
                arrived = time.perf_counter()
                reply = (await self.batcher.submit(session, "audio", message.data) if self.batcher
                         else await self._call(loop, session.accept, message.data, arrived))
                if reply:
                    await socket.send_json(reply)
            elif message.type == WSMsgType.TEXT:
                try:
                    command = json.loads(message.data).get("type")
                except (ValueError, AttributeError):
                    command = None
                if command == "end":
                    await socket.send_json(await self.batcher.submit(session, "end") if self.batcher
                                           else await self._call(loop, session.finish, time.perf_counter()))
                elif command == "reset":
                    session = StreamSession(self.recognizer)
                    await socket.send_json({"type": "ready",
                                            "sample_rate": self.recognizer.info.sample_rate})
                else:
                    await socket.send_json({"type": "error", "message": "unknown command"})
            elif message.type == WSMsgType.ERROR:
                break


    async def _call(self, loop, function, *arguments) -> dict | None:
        """Run a model call in the pool; a failure is an error event on this stream only."""
        try:
            return await loop.run_in_executor(self.pool, function, *arguments)
        except RuntimeError as error:
            if self.stopping:  # the pool is shut down
                raise asyncio.CancelledError from None
            return {"type": "error", "message": f"RuntimeError: {error}"}
        except SpeechmpqError as error:  # bad audio: an error event on this stream only
            return {"type": "error", "message": str(error)}
        except Exception as error:  # an onnxruntime failure: also this stream only, named
            return {"type": "error", "message": f"{type(error).__name__}: {error}"}


def serve(model: str | None, config: RecognizerConfig, host: str = "127.0.0.1", port: int = 8000,
          max_streams: int = 16, batch: bool = True) -> int:
    from speechmpq.edge_demo.terminal import default_model
    from speechmpq.runtime import steady_allocator

    web, _ = _import_aiohttp()
    path = Path(model) if model else default_model()
    steady_allocator()  # runs for hours: keep RSS from creeping up (see runtime/memory.py)
    server = DemoServer(path, config, max_streams=max_streams, batch=batch)
    for warning in server.recognizer.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if host not in ("127.0.0.1", "localhost", "::1"):
        print(f"warning: listening on {host}: anyone who can reach this machine can use the demo",
              file=sys.stderr)
    shown = f"[{host}]" if ":" in host else host
    if server.summary["kernels"]:
        print(server.summary["kernels"], file=sys.stderr)
    print(server.summary["frontend_cache"] + "; decoding: " + (
        "batched (the ready chunks of all streams share model calls)" if batch else "one stream per call"),
        file=sys.stderr)
    print(f"speechmpq serve: {path.name} ({server.summary['weights']}) at http://{shown}:{port}/ "
          "(Ctrl-C to stop)", file=sys.stderr, flush=True)
    web.run_app(server.app(), host=host, port=port, print=None, access_log=None)
    return 0
