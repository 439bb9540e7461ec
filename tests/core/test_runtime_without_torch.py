"""runtime/ and edge_demo/ must import on a device that has no torch (pytorch/ao test_lean_import)."""


def test_blocker_really_blocks_torch(without_torch):
    result = without_torch("import torch")
    assert result.returncode != 0 and "blocked" in result.stderr


def test_runtime_and_shared_modules_import_without_torch(without_torch):
    code = ("import speechmpq.runtime, speechmpq.runtime.session, speechmpq.onnx_metadata, "
            "speechmpq.runtime.recognizer, speechmpq.runtime.stream, speechmpq.runtime.decoding, "
            "speechmpq.runtime.ctc, speechmpq.runtime.transcribe_files, speechmpq.scoring, "
            "speechmpq.runtime.ctc_lm, speechmpq.runtime.lm, speechmpq.ngram, speechmpq.cli.lm_commands, "
            "speechmpq.edge_demo, speechmpq.edge_demo.terminal, speechmpq.edge_demo.server, "
            "speechmpq.edge_demo.arm_check, speechmpq.runtime.memory, speechmpq.audio, speechmpq.datasets, "
            "speechmpq.vocab, speechmpq.significance, speechmpq.jobs.evaluation, speechmpq.cli\n"
            "assert 'torch' not in sys.modules")
    result = without_torch(code)
    assert result.returncode == 0, result.stderr


def test_cli_help_works_without_torch(without_torch):
    result = without_torch("from speechmpq.cli import main; raise SystemExit(main(['--help']))")
    assert result.returncode == 0 and "corpus" in result.stdout


def test_runtime_transcribes_without_torch(tiny_corpus, without_torch):
    """The device story: numpy + onnxruntime + soundfile, a committed .onnx, an audio file."""
    from pathlib import Path

    from speechmpq.audio import load_audio
    from speechmpq.datasets import read_dataset
    from speechmpq.runtime import Recognizer

    model = Path(__file__).resolve().parents[2] / "models" / "demo-mpq.onnx"
    utterance = read_dataset(tiny_corpus / "test-clean")[0]
    expected = Recognizer(model).transcribe(load_audio(utterance.path), 16000)
    code = ("import speechmpq.runtime as s, speechmpq.runtime.bench, speechmpq.runtime.bench_child, "
            "speechmpq.runtime.bench_report, speechmpq.runtime.transcribe_files\n"
            "from speechmpq.audio import load_audio\n"
            f"r = s.Recognizer({str(model)!r})\n"
            "stream = r.create_stream()\n"
            f"samples = load_audio({str(utterance.path)!r})\n"
            "for i in range(0, samples.size, 1600):\n"
            "    stream.accept_waveform(samples[i:i + 1600], 16000); r.decode(stream)\n"
            "stream.input_finished(); r.decode(stream)\n"
            "assert 'torch' not in sys.modules\n"
            "print(stream.result.text)")
    result = without_torch(code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == expected and expected


def test_terminal_demo_runs_without_torch(without_torch):
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    clip, model = root / "edge_demo" / "clips" / "clip1.flac", root / "models" / "demo-mpq.onnx"
    result = without_torch("from speechmpq.cli import main\n"
                  f"code = main(['demo', {str(clip)!r}, '--model', {str(model)!r}])\n"
                  "assert 'torch' not in sys.modules\n"
                  "raise SystemExit(code)")
    assert result.returncode == 0, result.stderr
    assert "SCHOOLTEACHER" in result.stdout and "RTF" in result.stderr


def test_kernels_are_chosen_and_rewritten_at_load_without_torch(without_torch, tmp_path):
    """The rewrite into the kernels chosen for a CPU needs onnx and numpy, never torch."""
    from pathlib import Path

    model = Path(__file__).resolve().parents[2] / "models" / "demo-mpq.onnx"
    code = ("import os\n"
            f"os.environ['SPEECHMPQ_CACHE'] = {str(tmp_path)!r}\n"
            "from speechmpq.runtime import OnnxCTCModel, SessionConfig\n"
            "from speechmpq.runtime.cpu_facts import CpuFacts\n"
            f"m = OnnxCTCModel({str(model)!r}, SessionConfig(accuracy_level=4),\n"
            "                 cpu=CpuFacts('x86_64', ('avx2', 'avx512_vnni'), 'given'))\n"
            "assert m.kernels.rewritten and 'torch' not in sys.modules\n"
            "print(m.kernels.summary())")
    result = without_torch(code)
    assert result.returncode == 0, result.stderr
    assert "int8-dynamic" in result.stdout
