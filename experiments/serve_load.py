"""Load test of ``speechmpq serve`` on loopback: N concurrent real-time streams, batched or not.

    python experiments/serve_load.py --model models/demo-mpq.onnx --streams 1 4 16 --seconds 20 \
        --out results/serve_load

For each decoding mode (batched: the server's default, the ready chunks of all streams share model
calls; unbatched: ``--no-batch``) and each stream count, a fresh ``speechmpq serve`` process on a free
127.0.0.1 port; N WebSocket clients in this process each send 100 ms of 16-bit PCM every 100 ms (real
time, starts spread over the first 100 ms) for ``--seconds``, then end. Per-chunk latency is the
server's own: from the arrival of a window's last sample to the end of the model call that decoded
it (queueing included), pooled over every stream. RTF: each stream's model time over its audio
(batched: the shared call's time, what the stream waited); server CPU: the server process's CPU
seconds over the wall time, in cores; peak RSS: the server's VmHWM. Writes OUT.json, OUT.md and
OUT.png. Bounded: stream counts x modes x (seconds + start-up).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from speechmpq.audio import load_audio
from speechmpq.datasets import read_dataset
from speechmpq.files import atomic_write
from speechmpq.machine import machine_facts

PIECE_SECONDS = 0.1


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _audio(data: list[str], seconds: float, count: int) -> list[np.ndarray]:
    """``count`` streams of ``seconds`` each: utterances back to back, each stream starting elsewhere."""
    utterances = [u for folder in data for u in read_dataset(folder)] if data else []
    bundled = sorted((Path(__file__).resolve().parents[1] / "edge_demo" / "clips").glob("*.flac"))
    clips = [load_audio(u.path) for u in utterances[:64]] or [load_audio(p) for p in bundled]
    streams = []
    for index in range(count):
        pieces, total, k = [], 0, index
        while total < seconds * 16000:
            pieces.append(clips[k % len(clips)])
            total += pieces[-1].size
            k += 1
        streams.append(np.concatenate(pieces)[: int(seconds * 16000)])
    return streams


async def _client(session, url: str, samples: np.ndarray, delay: float) -> dict:
    pcm = (np.clip(samples, -1, 1) * 32767).astype("<i2")
    piece = int(PIECE_SECONDS * 16000)
    await asyncio.sleep(delay)
    async with session.ws_connect(url, max_msg_size=1 << 22) as ws:
        await ws.receive_json()
        started = time.perf_counter()
        for index, start in enumerate(range(0, pcm.size, piece)):
            wait = started + index * PIECE_SECONDS - time.perf_counter()
            if wait > 0:
                await asyncio.sleep(wait)
            await ws.send_bytes(pcm[start: start + piece].tobytes())
        await ws.send_str(json.dumps({"type": "end"}))
        while True:
            message = await ws.receive(timeout=300)
            if message.type != 1:  # not TEXT: the server closed
                raise RuntimeError(f"connection ended before the final result ({message.type})")
            reply = json.loads(message.data)
            if reply["type"] == "final":
                return reply
            if reply["type"] == "error":
                raise RuntimeError(reply["message"])


async def _clients(port: int, streams: list[np.ndarray]) -> list[dict]:
    import aiohttp

    url = f"http://127.0.0.1:{port}/ws"
    rng = np.random.default_rng(0)
    async with aiohttp.ClientSession() as session:
        return await asyncio.gather(*[_client(session, url, samples, float(rng.uniform(0, PIECE_SECONDS)))
                                      for samples in streams])


def _wait_ready(port: int, process: subprocess.Popen, timeout: float = 120.0) -> None:
    import urllib.request

    began = time.time()
    while time.time() - began < timeout:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited ({process.returncode}): {process.stderr.read()[-500:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/model", timeout=2) as response:
                json.loads(response.read())
                return
        except OSError:
            time.sleep(0.3)
    raise RuntimeError("the server did not answer in time")


def run_one(model: str, streams: list[np.ndarray], batch: bool, threads: int) -> dict:
    port = _free_port()
    command = [sys.executable, "-m", "speechmpq", "serve", "--model", model, "--port", str(port),
               "--max-streams", str(max(16, len(streams))), "--threads", str(threads)]
    command += [] if batch else ["--no-batch"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        _wait_ready(port, process)
        cpu_before, wall_before = _cpu_seconds(process.pid), time.perf_counter()
        replies = asyncio.run(_clients(port, streams))
        cpu = _cpu_seconds(process.pid) - cpu_before
        wall = time.perf_counter() - wall_before
    finally:
        process.terminate()
        process.wait(timeout=30)
    latencies = np.array([x for r in replies for x in r["chunk_latency_ms"]])
    return {
        "streams": len(streams), "batched": batch, "audio_seconds_per_stream": replies[0]["audio_seconds"],
        "chunks": int(latencies.size),
        "chunk_latency_ms": {"p50": float(np.percentile(latencies, 50)),
                             "p99": float(np.percentile(latencies, 99)), "max": float(latencies.max())},
        "rtf_per_stream": {"median": float(np.median([r["rtf"] for r in replies])),
                           "max": float(max(r["rtf"] for r in replies))},
        "server_cpu_cores": cpu / wall, "wall_seconds": wall,
        "peak_rss_mib": float(max(r["peak_rss_mib"] for r in replies)),
        "end_of_speech_ms_p50": float(np.median([r["end_of_speech_ms"] for r in replies])),
    }


def markdown(report: dict) -> str:
    machine = report["machine"]
    lines = [
        "# speechmpq serve under load (loopback)", "",
        f"Command: `{report['command']}`  ",
        f"Machine: {machine['cpu']}, {machine['cores']} cores, {machine['system']}; "
        f"onnxruntime {machine['versions']['onnxruntime']}; {machine['date']}.  ",
        f"Model: `{report['model']}`; {report['seconds']:g} s of real-time audio per stream in "
        f"{int(PIECE_SECONDS * 1000)} ms messages; server threads {report['threads'] or 'auto'}.", "",
        "Per-chunk latency: from the arrival of a window's last sample to the end of the model call that "
        "decoded it (queueing included), every chunk of every stream. RTF: a stream's model time over its "
        "audio (batched: the shared call's time). Server CPU: CPU seconds of the server process over the "
        "wall time (cores busy). Peak RSS: the server's VmHWM.", "",
        "| streams | decoding | chunks | latency p50 ms | latency p99 ms | max ms | RTF per stream (median) "
        "| server CPU cores | peak RSS MiB | end of speech ms p50 |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in report["rows"]:
        c = row["chunk_latency_ms"]
        lines.append(f"| {row['streams']} | {'batched' if row['batched'] else 'one stream per call'} | "
                     f"{row['chunks']} | {c['p50']:.1f} | {c['p99']:.1f} | {c['max']:.1f} | "
                     f"{row['rtf_per_stream']['median']:.3f} | {row['server_cpu_cores']:.2f} | "
                     f"{row['peak_rss_mib']:.0f} | {row['end_of_speech_ms_p50']:.1f} |")
    lines += ["", f"Chunk: {report['chunk_ms']} ms of new audio per window; a stream keeps up in real time "
              "while its latency stays below that.", ""]
    return "\n".join(lines)


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6, 3.6))
    for batched, style in ((True, "o-"), (False, "s--")):
        rows = [r for r in report["rows"] if r["batched"] == batched]
        label = "batched" if batched else "one stream per call"
        axis.plot([r["streams"] for r in rows], [r["chunk_latency_ms"]["p99"] for r in rows], style,
                  label=f"{label}, p99")
        axis.plot([r["streams"] for r in rows], [r["chunk_latency_ms"]["p50"] for r in rows], style,
                  alpha=0.4, label=f"{label}, p50")
    axis.axhline(report["chunk_ms"], color="grey", linewidth=0.8, label="chunk length")
    axis.set_xscale("log", base=2)
    axis.set_xlabel("concurrent real-time streams")
    axis.set_ylabel("per-chunk latency (ms)")
    axis.set_title("speechmpq serve on loopback", fontsize=10)
    axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="models/demo-mpq.onnx")
    parser.add_argument("--data", nargs="*", default=[], help="dataset folders (default: the bundled clips)")
    parser.add_argument("--streams", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--threads", type=int, default=0, help="server onnxruntime threads (0: per core)")
    parser.add_argument("--out", type=Path, default=Path("results/serve_load"))
    args = parser.parse_args(argv)
    from tqdm import tqdm

    from speechmpq.runtime import Recognizer

    chunk_ms = Recognizer(args.model).info.chunk_ms
    rows = []
    runs = [(count, batch) for count in args.streams for batch in (True, False)]
    for count, batch in tqdm(runs, desc="serve load", unit="run"):
        rows.append(run_one(args.model, _audio(args.data, args.seconds, count), batch, args.threads))
    report = {"command": "python experiments/serve_load.py " + " ".join(argv or sys.argv[1:]),
              "machine": machine_facts(), "model": args.model, "seconds": args.seconds,
              "threads": args.threads, "chunk_ms": chunk_ms, "rows": rows}
    atomic_write(args.out.with_suffix(".json"), json.dumps(report, indent=1) + "\n")
    atomic_write(args.out.with_suffix(".md"), markdown(report))
    plot(report, args.out.with_suffix(".png"))
    print(markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
