"""PyTorch eager inference behind the runtime's model interface, for the benchmark's reference row.

``TorchCTCModel`` has the two things a ``speechmpq.runtime.Recognizer`` needs from a model,
``info`` (the same ``ModelInfo`` an export of this directory would carry) and ``logits(values)``,
so the PyTorch row streams through exactly the same chunking and decoding code as the .onnx rows.

    python -m speechmpq.jobs.torch_backend SPEC    # one benchmark child, as runtime.bench_child
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch

from speechmpq.export import ExportConfig
from speechmpq.onnx_metadata import ModelInfo, model_metadata
from speechmpq.train.models import feature_settings, load_model, model_vocab


class TorchCTCModel:
    def __init__(self, model_dir: str | Path, threads: int = 0):
        if threads:
            torch.set_num_threads(threads)
        self.model = load_model(model_dir)
        metadata = model_metadata(self.model.config, model_vocab(model_dir),
                                  feature_settings(model_dir)["do_normalize"], ExportConfig(), "pytorch-fp32")
        self.info = ModelInfo.from_metadata(metadata, str(model_dir))
        self.accuracy_level = None

    def logits(self, values: np.ndarray) -> np.ndarray:
        """(samples,) or (batch, samples) -> (batch, frames, vocab) float32, as OnnxCTCModel."""
        values = np.asarray(values, dtype=np.float32)
        with torch.inference_mode():
            return self.model(torch.from_numpy(values.reshape(-1, values.shape[-1]))).logits.numpy()


if __name__ == "__main__":
    from speechmpq.runtime import run_bench_child

    spec = json.loads(sys.argv[1])
    run_bench_child(spec, lambda: TorchCTCModel(spec["model"], spec["threads"]))
