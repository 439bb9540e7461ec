"""Text for the demo's language model: sentences of the corpus generator that belong to the train split.

    python -m speechmpq.train.corpus.lm_text --seed 1001 --sentences 200000 --out runs/lm/generated.txt
    speechmpq lm --text data/synth/train runs/lm/generated.txt --order 3 --out models/lm.arpa.gz

The generator (``textgen.SentenceGenerator``) is the one the corpus speaks; a sentence is kept only
if ``corpus.split_of_sentence`` puts it in ``train``, the same hash that keeps every dev and test
sentence out of the train split, so no dev or test sentence of any corpus seed can reach the LM.
A seed other than the corpus's gives further sentences of the same grammar.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from pathlib import Path

from tqdm import tqdm

from speechmpq.files import atomic_write
from speechmpq.train.corpus.build import split_of_sentence
from speechmpq.train.corpus.textgen import SentenceGenerator


def train_sentences(seed: int, count: int, progress: bool = False) -> Iterator[str]:
    """``count`` transcripts of the generator with ``seed`` that fall in the train split."""
    generator = SentenceGenerator(seed)
    with tqdm(total=count, desc="LM text", unit="sentence", disable=not progress) as bar:
        kept = 0
        while kept < count:
            transcript = generator.sentence_pair()[1]
            if split_of_sentence(transcript) == "train":
                kept += 1
                bar.update()
                yield transcript


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=1001)
    parser.add_argument("--sentences", type=int, default=200_000)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    text = "\n".join(train_sentences(args.seed, args.sentences, progress=True)) + "\n"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(args.out, text)
    print(f"wrote {args.sentences} sentences to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
