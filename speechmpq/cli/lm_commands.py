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


def _pocketsphinx_lm() -> Path:
    """The general US English trigram inside pocketsphinx's wheel (found, not imported)."""
    import importlib.util

    spec = importlib.util.find_spec("pocketsphinx")
    if spec is None or not spec.submodule_search_locations:
        raise SpeechmpqError("--from-pocketsphinx needs pocketsphinx: "
                             "pip install 'speechmpq[general-lm]'")
    source = Path(next(iter(spec.submodule_search_locations))) / "model" / "en-us" / "en-us.lm.bin"
    if not source.is_file():
        raise SpeechmpqError(f"{source}: this pocketsphinx has no en-us.lm.bin")
    return source


def _convert(args) -> int:
    """An existing LM (ARPA, or pocketsphinx's) -> LM arrays (.npz) + lexicon, words in upper case."""
    from speechmpq.files import atomic_write
    from speechmpq.ngram import lexicon_lines
    from speechmpq.runtime.decoding import default_lexicon
    from speechmpq.runtime.lm import BOS, EOS, UNK, NGramLM
    from speechmpq.sphinx_lm import is_trie_lm, read_trie_lm
    from speechmpq.vocab import VOCAB

    out = Path(args.out)
    if not out.name.endswith(".npz"):
        raise SpeechmpqError(f"--out must end in .npz when converting an LM, not {out.name!r}")
    started = time.time()
    source = _pocketsphinx_lm() if args.from_pocketsphinx else Path(args.arpa)
    # pocketsphinx's binary trie is read with numpy straight into arrays
    lm = NGramLM.from_ngrams(*read_trie_lm(source), source) if is_trie_lm(source) else NGramLM(source)
    special = (BOS, EOS, UNK)
    upper = [w if w in special else w.upper() for w in lm.words]
    if len(set(upper)) != len(upper):
        raise SpeechmpqError(f"{source}: words that differ only in case; cannot map them onto the "
                             "model's tokens")
    lm.words = upper
    lm.save_arrays(out)
    letters = {t for t in VOCAB if len(t) == 1}
    spellable = [w for w in upper if w not in special and w and set(w) <= letters]
    lexicon = Path(args.lexicon) if args.lexicon else default_lexicon(out)  # where the decoder looks
    atomic_write(lexicon, "\n".join(lexicon_lines(spellable)) + "\n")
    sizes = ", ".join(f"{count} {n}-grams" for n, count in sorted(lm.ngrams.items()))
    print(f"{len(upper) - 3} words ({len(spellable)} spellable in the model's characters), {sizes} -> {out} "
          f"({out.stat().st_size / 1e6:.1f} MB), {lexicon} in {time.time() - started:.0f} s")
    return 0


def _cmd_lm(args) -> int:
    from speechmpq.files import atomic_write
    from speechmpq.ngram import count_ngrams, kneser_ney, lexicon_lines, write_arpa

    if args.from_pocketsphinx or args.arpa:
        if args.text:
            raise SpeechmpqError("give --text (build an LM) or --arpa/--from-pocketsphinx (convert one), "
                                 "not both")
        return _convert(args)
    if not args.text:
        raise SpeechmpqError("give --text (build an LM), or --arpa or --from-pocketsphinx (convert one)")
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
    lm.add_argument("--text", nargs="+",
                    help="text files (one sentence per line) or dataset folders (their *.trans.txt)")
    lm.add_argument("--arpa", default=None,
                    help="instead of --text: convert this LM (ARPA, or pocketsphinx's binary .lm.bin) into "
                    "arrays (--out X.npz: loads in seconds)")
    lm.add_argument("--from-pocketsphinx", action="store_true",
                    help="instead of --text: convert pocketsphinx's general US English trigram "
                    "(72k words; pip install 'speechmpq[general-lm]') into arrays (--out X.npz)")
    lm.add_argument("--order", type=int, default=3, help="n-gram order")
    lm.add_argument("--min-count", type=int, default=1,
                    help="leave out highest-order n-grams seen fewer times (smaller file)")
    lm.add_argument("--out", required=True,
                    help="LM file: .arpa, or .arpa.gz (compressed); .npz when converting")
    lm.add_argument("--lexicon", default=None, help="lexicon file (default: lexicon.txt beside --out)")
    lm.set_defaults(func=_cmd_lm)
