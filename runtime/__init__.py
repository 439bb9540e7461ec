"""speechmpq.runtime: streaming CTC recognition of exported .onnx models, numpy + onnxruntime only.

    from speechmpq.runtime import Recognizer, RecognizerConfig

    recognizer = Recognizer("models/demo-mpq.onnx", RecognizerConfig())
    stream = recognizer.create_stream()
    stream.accept_waveform(samples, 16000)
    stream.input_finished()
    recognizer.decode(stream)
    print(stream.result.text)

Callers import every public name from here. Each is loaded on first use (PEP 562), so importing
one module of the package loads only what that module needs: the benchmark parent
(``runtime/bench.py``) must not load onnxruntime, since its children inherit its peak RSS in
``ru_maxrss``.
"""

from __future__ import annotations

from speechmpq.lazy_face import lazy_face

# the module that defines each public name, grouped by concept
_EXPORTS = {
    # recognition: one shared recognizer, one stream per utterance
    "speechmpq.runtime.recognizer": ("Recognizer", "RecognizerConfig", "StreamingConfig", "EndpointConfig"),
    "speechmpq.runtime.stream": ("Stream", "Result"),
    # the model: one onnxruntime session and the metadata its .onnx file carries
    "speechmpq.runtime.session": ("OnnxCTCModel", "SessionConfig"),
    "speechmpq.onnx_metadata": ("ModelInfo",),
    # decoding: which decoder runs, what every decoder promises, the decoders and the LM they use
    "speechmpq.runtime.decoding": ("DecoderConfig", "build_decoder", "find_lm"),
    "speechmpq.runtime.ctc": ("CTCDecoder", "GreedyDecoder", "PrefixBeamDecoder"),
    "speechmpq.runtime.ctc_lm": ("LexiconLMDecoder",),
    "speechmpq.runtime.lm": ("NGramLM", "Lexicon"),
    # audio files fed as a microphone would (``speechmpq stream``)
    "speechmpq.runtime.transcribe_files": ("stream_files", "stream_file", "file_pieces"),
    # benchmark (``speechmpq bench``): the parent, one child's measurement, the report
    "speechmpq.runtime.bench": ("BenchConfig", "run_bench"),
    "speechmpq.runtime.bench_child": ("run_bench_child",),
    "speechmpq.runtime.bench_report": ("write_report", "bench_markdown"),
    # this process's memory, and the allocator setting for long runs
    "speechmpq.runtime.memory": ("process_memory", "steady_allocator"),
}
__all__, __getattr__, __dir__ = lazy_face(__name__, _EXPORTS)
