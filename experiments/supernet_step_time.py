"""Step time of a supernet (search) step vs a plain fake-quant QAT step, same batches, same process.

    python experiments/supernet_step_time.py --model models/demo --data data/synth/dev \\
        --out results/supernet_step_time.json [--device cpu] [--steps 20] [--repeats 3]

Both steps include the teacher forward, CTC + KL, backward and the optimizer step. Blocks of
``--steps`` steps alternate (plain, supernet, plain, ...) so drift hits both alike; the figure is
the median over blocks of supernet / plain seconds per step.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    """Parse, build the student once, time the steps, write the JSON (long: one linear measurement
    script; each part is a few lines)."""
    import torch

    from speechmpq.datasets import read_dataset
    from speechmpq.train import supernet as sn
    from speechmpq.train.data import SecondsBatchSampler, SpeechDataset, collate, utterance_seconds
    from speechmpq.train.quantize_config import QuantizeConfig
    from speechmpq.train.quantize_step import Context, build_optimizer, build_student, step_losses

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=Path("models/demo"))
    parser.add_argument("--data", type=Path, default=Path("data/synth/dev"))
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-seconds", type=float, default=32.0)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    utterances = read_dataset(args.data)
    seconds = utterance_seconds(utterances)
    sampler = SecondsBatchSampler(seconds, args.batch_seconds, seed=0)
    dataset = SpeechDataset(utterances)
    batches = [collate([dataset[i] for i in b]) for b, _ in zip(sampler, range(args.steps), strict=False)]
    configs = {
        "plain": QuantizeConfig(model=args.model, train_data=args.data, out="/nonexistent",
                                method="uniform", bits=4, device=args.device),
        "supernet": QuantizeConfig(model=args.model, train_data=args.data, out="/nonexistent",
                                   method="one-stage", device=args.device),
    }
    ctx = Context(configs["plain"])
    use_bf16 = ctx.device.type == "cuda" or torch.backends.mkldnn.is_available()
    from speechmpq.train.models import load_model

    teacher = load_model(args.model).to(ctx.device).eval()
    runs = {}
    for name, cfg in configs.items():
        model, _ = build_student(cfg, "search" if name == "supernet" else "qat", None, ctx.device)
        optimizer, _ = build_optimizer(model, cfg, 1000)
        runs[name] = (cfg, model, optimizer)

    def block(name: str) -> float:
        cfg, model, optimizer = runs[name]
        model.train()
        if ctx.device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        for step, batch in enumerate(batches):
            if name == "supernet":
                sn.set_temperature(model, sn.tau_at(step, len(batches)))
                sn.draw_gumbel_noise(model, torch.Generator().manual_seed(step))
            ctc, kl, utts, frames = step_losses(model, teacher, batch, ctx, cfg, use_bf16)
            loss = ctc / utts + kl / frames
            if name == "supernet":
                loss = loss + cfg.size_weight * sn.bits_summary(model)["expected"]
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        if ctx.device.type == "cuda":
            torch.cuda.synchronize()
        return (time.perf_counter() - start) / len(batches)

    block("plain"), block("supernet")  # warm-up
    times = {"plain": [], "supernet": []}
    for _ in range(args.repeats):
        for name in ("plain", "supernet"):
            times[name].append(block(name))
    ratios = [s / p for s, p in zip(times["supernet"], times["plain"], strict=True)]
    result = {
        "supernet_over_plain": statistics.median(ratios), "ratios": ratios,
        "sec_per_step": {k: v for k, v in times.items()}, "batch_seconds": args.batch_seconds,
        "steps_per_block": len(batches), "device": str(ctx.device),
        "cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
        "gpu": torch.cuda.get_device_name(ctx.device) if ctx.device.type == "cuda" else None,
        "bf16": use_bf16, "torch": torch.__version__, "date": time.strftime("%Y-%m-%d"),
        "command": "python experiments/supernet_step_time.py " + " ".join(argv or sys.argv[1:]),
    }  # fmt: skip
    print(f"plain fake-quant QAT {statistics.median(times['plain']):.3f} s/step, supernet "
          f"{statistics.median(times['supernet']):.3f} s/step, ratio {result['supernet_over_plain']:.3f}")
    if args.out:
        from speechmpq.files import atomic_write

        atomic_write(args.out, json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
