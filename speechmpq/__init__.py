"""speechmpq: one-stage mixed-precision quantization of speech foundation models.

The top-level package holds only what every stage shares: audio I/O, transcript text rules, the
character vocabulary, dataset readers and the command line. Stages live in subpackages:
``speechmpq.train`` (torch), ``speechmpq.export`` (torch + onnx), ``speechmpq.runtime`` and
``speechmpq.edge_demo`` (numpy + onnxruntime only).
"""

__version__ = "0.1.0"
