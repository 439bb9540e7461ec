"""The browser server's streams: one ``StreamSession`` per WebSocket, decoded alone or in batches.

Unbatched, each connection's audio runs its own model calls in the server's thread pool. Batched
(the default), a ``Batcher`` owns decoding: connections queue their audio and wait; each round (one
at a time, in the pool) feeds every queued piece to its stream, runs ``Recognizer.decode_streams``
over the streams that got audio (the ready windows of equal shape share one model call) and answers
every waiting connection. N tabs in their steady state cost one model call per round, not N.

Per-chunk latency, the same way in both modes: from the arrival of the message that made a window
ready (its last sample) to the end of the model call that decoded it (queueing included).
"""

from __future__ import annotations

import asyncio
import time

import numpy as np

from speechmpq.errors import SpeechmpqError
from speechmpq.runtime import Recognizer, process_memory


class StreamSession:
    """One WebSocket's stream, its figures and its latency accounting."""

    def __init__(self, recognizer: Recognizer):
        self.recognizer = recognizer
        self.stream = recognizer.create_stream()
        self.rate = recognizer.info.sample_rate
        self.audio_seconds = 0.0
        self.compute: list[float] = []  # model seconds of each window decoded
        self.latencies: list[float] = []  # seconds from a window's last sample arriving to its decode
        self.shown = None
        self._arrivals: list[tuple[int, float]] = []  # (samples received after a message, its arrival)
        self._received = 0
        self._seen = 0  # windows of the stream accounted for

    def feed(self, data: bytes, arrived: float) -> None:
        """Queue-free part of ``accept``: the PCM into the stream (call where decoding runs)."""
        samples = np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0
        if self.stream.is_final:
            raise SpeechmpqError("stream already finished; send reset")
        self.stream.accept_waveform(samples, self.rate)
        self.audio_seconds += samples.size / self.rate
        self._received += samples.size
        self._arrivals.append((self._received, arrived))

    def account(self, finished: float) -> int:
        """Record the windows decoded since the last call (model time and latency); returns how many."""
        new = self.stream.windows_decoded - self._seen
        if new <= 0:
            return 0
        self._seen = self.stream.windows_decoded
        self.compute.extend(list(self.stream.compute_seconds)[-new:])
        for end in list(self.stream.window_ends)[-new:]:
            ready = next((at for received, at in self._arrivals if received >= end),
                         self._arrivals[-1][1] if self._arrivals else finished)
            self.latencies.append(finished - ready)
        # arrivals before the last decoded window's end are no longer needed
        last_end = self.stream.window_ends[-1]
        self._arrivals = [entry for entry in self._arrivals if entry[0] >= last_end] or self._arrivals[-1:]
        return new

    def stats(self, final: bool = False) -> dict:
        times = 1000 * np.array(self.compute or [0.0])
        figures = {"chunks": len(self.compute), "chunk_ms": float(times[-1]),
                   "chunk_ms_p50": float(np.median(times)), "audio_seconds": self.audio_seconds,
                   "rtf": float(sum(self.compute) / self.audio_seconds) if self.audio_seconds else 0.0,
                   "peak_rss_mib": process_memory()["hwm_mib"]}
        if final:
            figures["chunk_latency_ms"] = [round(1000 * s, 3) for s in self.latencies]
        return figures

    def partial(self) -> dict | None:
        """The partial result to send, or None when it has not changed."""
        result = self.stream.result
        if (result.stable, result.tentative) == self.shown:
            return None
        self.shown = (result.stable, result.tentative)
        return {"type": "partial", "stable": result.stable, "tentative": result.tentative, **self.stats()}

    def final(self, began: float) -> dict:
        return {"type": "final", "text": self.stream.result.text,
                "end_of_speech_ms": 1000 * (time.perf_counter() - began), **self.stats(final=True)}

    # ---- unbatched: each call decodes this stream alone -------------------------------------------
    def accept(self, data: bytes, arrived: float | None = None) -> dict | None:
        self.feed(data, time.perf_counter() if arrived is None else arrived)
        self.recognizer.decode(self.stream)
        return self.partial() if self.account(time.perf_counter()) else None

    def finish(self, arrived: float | None = None) -> dict:
        began = time.perf_counter() if arrived is None else arrived
        self.stream.input_finished()
        self._arrivals.append((self._received, began))
        self.recognizer.decode(self.stream)
        self.account(time.perf_counter())
        return self.final(began)


class Batcher:
    """One decoding loop for every open stream (see the module doc)."""

    def __init__(self, recognizer: Recognizer, pool):
        self.recognizer, self.pool = recognizer, pool
        self.queue: dict[StreamSession, list[tuple[str, bytes | None, float, asyncio.Future]]] = {}
        self.wake = asyncio.Event()
        self.task: asyncio.Task | None = None
        self.rounds = 0
        self.calls = 0

    async def submit(self, session: StreamSession, kind: str, data: bytes | None = None) -> dict | None:
        """Queue ``kind`` ("audio" with PCM bytes, or "end") for ``session``; returns its reply."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self.queue.setdefault(session, []).append((kind, data, time.perf_counter(), future))
        self.wake.set()
        if self.task is None or self.task.done():
            self.task = loop.create_task(self._loop())
        return await future

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while self.queue:
            self.wake.clear()
            work, self.queue = self.queue, {}
            try:
                replies = await loop.run_in_executor(self.pool, self._round, work)
            except Exception as error:  # the pool is gone (shutdown) or the model failed for all
                replies = {session: [{"type": "error", "message": f"{type(error).__name__}: {error}"}]
                           * len(items) for session, items in work.items()}
            for session, items in work.items():
                for (_, _, _, future), reply in zip(items, replies[session], strict=True):
                    if not future.done():
                        future.set_result(reply)
            if not self.queue:
                await self._idle()

    async def _idle(self) -> None:
        try:
            await asyncio.wait_for(self.wake.wait(), timeout=0.5)
        except asyncio.TimeoutError:
            return

    def _round(self, work: dict) -> dict[StreamSession, list[dict | None]]:
        """Feed, decode every stream that got something in shared calls, answer (in the pool)."""
        replies: dict[StreamSession, list[dict | None]] = {}
        streams, ended = [], {}
        for session, items in work.items():
            replies[session] = [None] * len(items)
            try:
                for index, (kind, data, arrived, _) in enumerate(items):
                    if kind == "audio":
                        session.feed(data, arrived)
                    else:
                        session.stream.input_finished()
                        session._arrivals.append((session._received, arrived))
                        ended[session] = (index, arrived)
                streams.append(session)
            except SpeechmpqError as error:  # bad audio: an error on this stream only
                replies[session] = [{"type": "error", "message": str(error)}] * len(items)
        self.calls += self.recognizer.decode_streams([session.stream for session in streams])
        self.rounds += 1
        finished = time.perf_counter()
        for session in streams:
            decoded = session.account(finished)
            if session in ended:
                index, arrived = ended[session]
                replies[session][index] = session.final(arrived)
            elif decoded:
                replies[session][-1] = session.partial()
        return replies
