"""``speechmpq lm``: a word n-gram LM (ARPA) and a lexicon from text, for ``--decoder lm``."""

from __future__ import annotations

import time
from pathlib import Path

from speechmpq.errors import SpeechmpqError


def read_sentences(paths: list[str]) -> list[list[str]]:
    """Normalised word lists: a text file gives one sentence per line; a folder, the transcripts of
    its ``*.trans.txt`` files (LibriSpeech trees; the utterance id is dropped)."""
    from speechmpq.text import normalize_transcript

    sentences = []
    for name in paths:
        path = Path(name)
        files = sorted(path.rglob("*.trans.txt")) if path.is_dir() else [path]
        if path.is_dir() and not files:
            raise SpeechmpqError(f"{path}: no *.trans.txt transcripts in this folder")
        for file in files:
            try:
                lines = file.read_text(encoding="utf-8").splitlines()
            except (OSError, UnicodeDecodeError) as error:
                raise SpeechmpqError(f"{file}: cannot read as UTF-8 text ({error})") from None
            strip_id = file.name.endswith(".trans.txt")
            for line in lines:
                text = line.split(maxsplit=1)[1] if strip_id and " " in line.strip() else line
                words = normalize_transcript(text).split()
                if words:
                    sentences.append(words)
    if not sentences:
        raise SpeechmpqError("the text has no words")
    return sentences


def _cmd_lm(args) -> int:
    from speechmpq.files import atomic_write
    from speechmpq.ngram import count_ngrams, kneser_ney, lexicon_lines, write_arpa

    if not 1 <= args.order <= 6:
        raise SpeechmpqError(f"--order must be 1..6, not {args.order}")
    if args.min_count < 1:
        raise SpeechmpqError(f"--min-count must be >= 1, not {args.min_count}")
    out = Path(args.out)
    if not out.name.endswith((".arpa", ".arpa.gz")):
        raise SpeechmpqError(f"--out must end in .arpa or .arpa.gz, not {out.name!r}")
    started = time.time()
    sentences = read_sentences(args.text)
    counts = count_ngrams(sentences, args.order)
    model = kneser_ney(counts, min_count=args.min_count)
    write_arpa(model, out)
    lexicon = Path(args.lexicon) if args.lexicon else out.parent / "lexicon.txt"
    words = [g[0] for g in model[1]]
    atomic_write(lexicon, "\n".join(lexicon_lines(words)) + "\n")
    sizes = ", ".join(f"{len(model[n])} {n}-grams" for n in sorted(model))
    print(f"{len(sentences)} sentences, {sum(len(s) for s in sentences)} words, {len(words) - 3} word types "
          f"-> {out} ({out.stat().st_size / 1e6:.2f} MB; interpolated modified Kneser-Ney, {sizes}), "
          f"{lexicon} in {time.time() - started:.0f} s")
    return 0


def add_commands(commands) -> None:
    lm = commands.add_parser("lm", help="build a word n-gram LM (ARPA, modified Kneser-Ney) and a "
                             "lexicon from text, for --decoder lm")
    lm.add_argument("--text", nargs="+", required=True,
                    help="text files (one sentence per line) or dataset folders (their *.trans.txt)")
    lm.add_argument("--order", type=int, default=3, help="n-gram order")
    lm.add_argument("--min-count", type=int, default=1,
                    help="leave out highest-order n-grams seen fewer times (smaller file)")
    lm.add_argument("--out", required=True, help="LM file: .arpa, or .arpa.gz (compressed)")
    lm.add_argument("--lexicon", default=None, help="lexicon file (default: lexicon.txt beside --out)")
    lm.set_defaults(func=_cmd_lm)
