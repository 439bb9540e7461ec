"""Training step time of the demo model with its 4-layer conv front end vs wav2vec2's 7-layer one.

    python experiments/frontend_step_time.py --out results/frontend_step_time.json

Both variants share the demo transformer; the default front end is wav2vec2's seven conv layers
(kernels 10,3,3,3,3,2,2, strides 5,2,2,2,2,2,2) at the demo's width of 256 channels. One step =
forward + CTC loss + backward + AdamW on a batch of 16 random 4-second inputs; the median of
``--repeats`` timed steps after one warm-up step is reported.
"""

from __future__ import annotations

import argparse
import datetime
import json
import statistics
import sys
import time
from pathlib import Path

from demo_model import machine

from speechmpq.files import atomic_write


def step_seconds(model, bf16: bool, repeats: int, batch: int = 16, seconds: float = 4.0) -> float:
    import torch

    inputs = torch.randn(batch, int(seconds * 16000)) * 0.1
    labels = torch.randint(5, 32, (batch, int(seconds * 13)))
    optimizer = torch.optim.AdamW(model.parameters(), 1e-4)
    model.train()
    times = []
    for _ in range(repeats + 1):
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = model(inputs, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        times.append(time.perf_counter() - start)
    return statistics.median(times[1:])


def main(argv: list[str] | None = None) -> int:
    import torch
    import transformers

    from speechmpq.train.models import _COMMON, PRESETS

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    variants = {
        "demo: 4 conv layers (64,128,192,256)": PRESETS["demo"],
        "wav2vec2 default: 7 conv layers x 256": dict(
            PRESETS["demo"], conv_dim=(256,) * 7, conv_kernel=(10, 3, 3, 3, 3, 2, 2),
            conv_stride=(5, 2, 2, 2, 2, 2, 2)),
    }
    rows = []
    for name, preset in variants.items():
        torch.manual_seed(0)
        model = transformers.Wav2Vec2ForCTC(transformers.Wav2Vec2Config(**_COMMON, **preset))
        for bf16 in (False, True):
            seconds = step_seconds(model, bf16, args.repeats)
            rows.append({"front_end": name, "bf16": bf16, "step_seconds": round(seconds, 3),
                         "parameters": sum(p.numel() for p in model.parameters()),
                         "audio_seconds_per_second": round(64.0 / seconds, 1)})
            print(f"{name:<40} bf16={bf16!s:<5} {seconds:6.2f} s/step  "
                  f"{64.0 / seconds:6.1f} s of audio per s")
    report = {"date": datetime.date.today().isoformat(), "machine": machine(),
              "torch_threads": torch.get_num_threads(), "batch": "16 x 4 s", "rows": rows,
              "command": "python experiments/frontend_step_time.py " + " ".join(argv or sys.argv[1:])}
    atomic_write(args.out, json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
