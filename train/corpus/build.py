"""Synthetic English speech corpus in a LibriSpeech-style tree, spoken by libespeak-ng.

Layout written under ``out``::

    SPLIT/SPEAKER/CHAPTER/SPEAKER-CHAPTER-NNNN.flac     16 kHz mono 16-bit FLAC
    SPLIT/SPEAKER/CHAPTER/SPEAKER-CHAPTER.trans.txt     "UTT-ID TRANSCRIPT" lines
    SPLIT/utterances.tsv   per utterance: id, seconds, voice, seen/unseen, prosody, degradation
    speakers.tsv           speaker id → accent, variant, seen in training or not
    corpus.json            the config and measured statistics of each split

Splits: ``train`` (seen voices, part degraded), ``dev`` (seen voices, same mix as train),
``test-clean`` (clean audio) and ``test-other`` (noise and/or reverb), each test split half seen and
half unseen voices. ``dev-clean`` and ``dev-other`` are dev's sentences spoken the way the test
splits are (the dev verdict corpora that settings are chosen on; not together with ``dev``).
Sentences go to splits by a hash of their transcript, so no sentence is shared between splits
whatever the seed; ``disjoint_from`` also keeps out every sentence another corpus speaks (for
sentence files, which have no hash split). Every utterance is synthesized in a new process that loads espeak
afresh, which makes the audio a function of the utterance plan alone (see
``speechmpq.train.corpus.espeak`` for why): same seed, same bytes.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import shutil
import time
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np

from speechmpq.audio import SAMPLE_RATE
from speechmpq.errors import SpeechmpqError
from speechmpq.files import atomic_write, replace_folder, restore_folder
from speechmpq.train.corpus import augment
from speechmpq.train.corpus.espeak import ACCENTS, Prosody, get_engine
from speechmpq.train.corpus.textgen import SentenceGenerator

SPLITS = ("train", "dev", "test-clean", "test-other", "dev-clean", "dev-other")
DEFAULT_SPLITS = SPLITS[:4]  # a training corpus: train, dev and the two test splits
DEV_CONDITIONS = ("dev-clean", "dev-other")  # dev sentences with the test splits' conditions
_SPLIT_CODE = {"train": 1, "dev": 2, "test-clean": 3, "test-other": 4, "dev-clean": 5, "dev-other": 6}
# Human-sounding espeak variants ("" is the accent's default voice). Unseen ones never reach train/dev.
SEEN_VARIANTS = (
    "", "m1", "m2", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f5", "klatt", "klatt2", "klatt4",
    "adam", "Alex", "Annie", "aunty", "belinda", "benjamin", "caleb", "david", "ed", "edward",
    "grandpa", "ian", "john", "linda", "max", "michel", "norbert", "paul", "quincy", "robert",
    "steph", "travis", "victor", "zac",
)  # fmt: skip
UNSEEN_VARIANTS = ("m3", "f4", "klatt3")


def voice_table() -> list[tuple[str, str]]:
    """Every (accent, variant) pair, in a fixed order: speaker id = 1000 + index."""
    return [(a, v) for a in ACCENTS for v in SEEN_VARIANTS + UNSEEN_VARIANTS]


def _hash_percent(text: str) -> int:
    return int(hashlib.sha1(text.encode()).hexdigest()[:8], 16) % 100


def split_of_sentence(transcript: str) -> str:
    """Hash-based split of a sentence: ~2 % dev, ~2 % test-clean, ~2 % test-other, rest train."""
    bucket = _hash_percent(transcript)
    if bucket < 2:
        return "dev"
    if bucket < 4:
        return "test-clean"
    if bucket < 6:
        return "test-other"
    return "train"


def dev_condition_of(transcript: str) -> str:
    """dev-clean or dev-other for a dev sentence (a second hash, half each)."""
    return DEV_CONDITIONS[_hash_percent("condition " + transcript) % 2]


@dataclass
class CorpusConfig:
    out: Path  # output folder (created; existing splits are refused unless overwrite)
    hours: float = 1.0  # estimated hours of the train split
    seed: int = 0  # one seed determines every sentence, voice, prosody and degradation
    splits: tuple[str, ...] = DEFAULT_SPLITS  # which splits to write (any of SPLITS)
    eval_utterances: int = 200  # utterances in each split but train (dev, test-*, dev-*)
    noise_prob: float = 0.4  # train/dev: share of utterances with additive noise
    reverb_prob: float = 0.25  # train/dev: share of utterances with reverb
    snr_db: tuple[float, float] = (5.0, 30.0)  # additive noise SNR range
    rt60_s: tuple[float, float] = (0.15, 0.7)  # reverb time range
    rate_wpm: tuple[int, int] = (130, 210)  # speaking rate range
    jobs: int = field(default_factory=lambda: os.cpu_count() or 1)  # synthesis processes
    overwrite: bool = False  # replace splits that already exist (only once the new one is complete)
    # a text file of sentences (one per line) to speak instead of the grammar's: each requested
    # split takes the next sentences of a seeded shuffle in turn (no hash split), e.g. a held-out
    # test corpus from another text source (train/corpus/wordlists/heldout_python_docs.txt)
    sentences: Path | None = None
    # never speak a sentence that this other corpus speaks (its plan is drawn, no audio made): keeps
    # a dev corpus of a sentence file apart from the test corpus of the same file
    disjoint_from: CorpusConfig | None = None

    def __post_init__(self):
        self.out = Path(self.out)
        self.splits = tuple(self.splits)
        unknown = [s for s in self.splits if s not in SPLITS]
        if unknown or not self.splits:
            raise ValueError(f"splits must be a non-empty subset of {SPLITS}, got {self.splits}")
        if "dev" in self.splits and set(DEV_CONDITIONS) & set(self.splits):
            raise ValueError("dev and dev-clean/dev-other share their sentences: ask for one or the other")
        if not self.hours > 0:
            raise ValueError(f"hours must be positive, got {self.hours}")
        if self.eval_utterances < 1:
            raise ValueError(f"eval_utterances must be >= 1, got {self.eval_utterances}")
        for name in ("noise_prob", "reverb_prob"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if self.jobs < 1:
            raise ValueError(f"jobs must be >= 1, got {self.jobs}")
        if self.sentences is not None:
            self.sentences = Path(self.sentences)
        if isinstance(self.disjoint_from, dict):  # read back from corpus.json
            self.disjoint_from = CorpusConfig.from_dict(self.disjoint_from)

    def to_dict(self) -> dict:
        """Plain JSON values (paths as strings), nested configs included."""
        return {key: (value.to_dict() if isinstance(value, CorpusConfig) else
                      str(value) if isinstance(value, Path) else value)
                for key, value in ((f.name, getattr(self, f.name)) for f in fields(self))}

    @classmethod
    def from_dict(cls, data: dict) -> CorpusConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown corpus settings: {sorted(unknown)}")
        values = {key: tuple(value) if isinstance(value, list) else value for key, value in data.items()}
        return cls(**values)


@dataclass(frozen=True)
class UtterancePlan:
    """Everything that determines one utterance's audio."""

    utt_id: str
    split: str
    speaker_id: int
    accent: str
    variant: str
    seen: bool
    tts_text: str
    transcript: str
    prosody: Prosody
    seed: int
    peak_dbfs: float
    pad_s: tuple[float, float]
    snr_db: float | None
    noise_color: str
    rt60_s: float | None


def _estimated_seconds(transcript: str, rate_wpm: int) -> float:
    return 0.5 + len(transcript.split()) * 60.0 / rate_wpm


class _FileSentences:
    """``sentence_pair`` over a text file's sentences in a seeded shuffle (reshuffled when used up)."""

    def __init__(self, path: Path, seed: int):
        from speechmpq.text import normalize_transcript

        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as error:
            raise SpeechmpqError(f"{path}: cannot read the sentences ({error})") from None
        self.pairs = [(" ".join(line.split()), normalize_transcript(line)) for line in lines]
        self.pairs = [(text, transcript) for text, transcript in self.pairs if transcript]
        if not self.pairs:
            raise SpeechmpqError(f"{path}: no sentences")
        self.rng = np.random.default_rng([seed, 7])
        self.order: list[int] = []

    def sentence_pair(self) -> tuple[str, str]:
        if not self.order:
            self.order = self.rng.permutation(len(self.pairs)).tolist()
        return self.pairs[self.order.pop()]


def plan_corpus(cfg: CorpusConfig) -> list[UtterancePlan]:
    """Draw every utterance of the requested splits from ``cfg.seed`` alone (and ``cfg.sentences``)."""
    rng = np.random.default_rng(cfg.seed)
    sentences = _FileSentences(cfg.sentences, cfg.seed) if cfg.sentences else SentenceGenerator(cfg.seed)
    turn = 0
    voices = voice_table()
    seen_ids = [i for i, (_, v) in enumerate(voices) if v in SEEN_VARIANTS]
    unseen_ids = [i for i, (_, v) in enumerate(voices) if v in UNSEEN_VARIANTS]
    budget = {s: 0.0 for s in SPLITS}
    target = {"train": cfg.hours * 3600.0}
    target.update({s: float(cfg.eval_utterances) for s in SPLITS if s != "train"})
    wanted = set(cfg.splits)
    dev_conditions = bool(wanted & set(DEV_CONDITIONS))
    excluded = {p.transcript for p in plan_corpus(cfg.disjoint_from)} if cfg.disjoint_from else set()
    counters: dict[tuple[int, int], int] = {}
    plans = []
    while any(budget[s] < target[s] for s in wanted):
        tts_text, transcript = sentences.sentence_pair()
        if cfg.sentences:  # the requested splits in turn, skipping full ones
            open_splits = [s for s in SPLITS if s in wanted and budget[s] < target[s]]
            split, turn = open_splits[turn % len(open_splits)], turn + 1
        else:
            split = split_of_sentence(transcript)
            if split == "dev" and dev_conditions:
                split = dev_condition_of(transcript)
        # Draw every random quantity before deciding whether to keep the sentence, so the plan of
        # one split does not depend on which other splits were requested (dev-clean/dev-other take
        # their half of unseen voices from a hash, not the generator: same draws as for dev).
        unseen = split.startswith("test") and rng.random() < 0.5
        if split in DEV_CONDITIONS:
            unseen = _hash_percent("voice " + transcript) < 50
        voice_index = int(rng.choice(unseen_ids if unseen else seen_ids))
        prosody = Prosody(
            rate_wpm=int(rng.integers(cfg.rate_wpm[0], cfg.rate_wpm[1] + 1)),
            pitch=int(rng.integers(25, 76)),
            pitch_range=int(rng.integers(20, 81)),
            volume=60,
        )
        utt_seed = int(rng.integers(1, 2**31 - 1))
        peak_dbfs = float(rng.uniform(-20.0, -1.0))
        pad_s = (float(rng.uniform(0.05, 0.4)), float(rng.uniform(0.05, 0.4)))
        noise_draw, reverb_draw = rng.random(), rng.random()
        snr = float(rng.uniform(*cfg.snr_db))
        color = str(rng.choice(["white", "pink", "brown"]))
        rt60 = float(rng.uniform(*cfg.rt60_s))
        if split not in wanted or budget[split] >= target[split] or transcript in excluded:
            continue
        if split in ("test-clean", "dev-clean"):
            noisy, reverberant = False, False
        elif split in ("test-other", "dev-other"):
            noisy, reverberant = noise_draw < 0.7, reverb_draw < 0.7
            if not (noisy or reverberant):
                noisy = True
        else:
            noisy, reverberant = noise_draw < cfg.noise_prob, reverb_draw < cfg.reverb_prob
        chapter = _SPLIT_CODE[split] * 100
        speaker_id = 1000 + voice_index
        number = counters.get((speaker_id, chapter), 0)
        counters[(speaker_id, chapter)] = number + 1
        accent, variant = voices[voice_index]
        plans.append(UtterancePlan(
            utt_id=f"{speaker_id}-{chapter}-{number:04d}", split=split, speaker_id=speaker_id,
            accent=accent, variant=variant, seen=not unseen, tts_text=tts_text,
            transcript=transcript, prosody=prosody, seed=utt_seed, peak_dbfs=peak_dbfs,
            pad_s=pad_s, snr_db=snr if noisy else None, noise_color=color,
            rt60_s=rt60 if reverberant else None,
        ))  # fmt: skip
        budget[split] += (
            _estimated_seconds(transcript, prosody.rate_wpm) if split == "train" else 1.0
        )
    return plans


def render(plan: UtterancePlan) -> np.ndarray:
    """Synthesize and degrade one planned utterance → float32 at 16 kHz. Needs a fresh process."""
    import soxr

    engine = get_engine()
    raw = engine.synthesize(plan.tts_text, plan.accent, plan.variant or None, plan.prosody,
                            plan.seed)
    audio = soxr.resample(raw, engine.sample_rate, SAMPLE_RATE).astype(np.float32)
    rng = np.random.default_rng(plan.seed)
    pads = [np.zeros(int(s * SAMPLE_RATE), np.float32) for s in plan.pad_s]
    audio = np.concatenate([pads[0], audio, pads[1]])
    if plan.rt60_s is not None:
        audio = augment.add_reverb(audio, plan.rt60_s, SAMPLE_RATE, rng)
    if plan.snr_db is not None:
        audio = augment.add_noise(audio, plan.snr_db, plan.noise_color, rng)
    return np.clip(augment.peak_normalize(audio, plan.peak_dbfs), -1.0, 1.0)


def _render_to_file(job: tuple[UtterancePlan, str]) -> tuple[str, float]:
    import soundfile

    plan, path = job
    audio = render(plan)
    soundfile.write(path, audio, SAMPLE_RATE, subtype="PCM_16", format="FLAC")
    return plan.utt_id, audio.shape[0] / SAMPLE_RATE


def _flac_path(root: Path, plan: UtterancePlan) -> Path:
    chapter = plan.utt_id.split("-")[1]
    return root / str(plan.speaker_id) / chapter / f"{plan.utt_id}.flac"


def _write_split(root: Path, plans: list[UtterancePlan], durations: dict[str, float]) -> None:
    transcripts: dict[Path, list[str]] = {}
    for plan in plans:
        folder = _flac_path(root, plan).parent
        transcripts.setdefault(folder, []).append(f"{plan.utt_id} {plan.transcript}")
    for folder, lines in transcripts.items():
        speaker, chapter = folder.parent.name, folder.name
        (folder / f"{speaker}-{chapter}.trans.txt").write_text("\n".join(lines) + "\n")
    header = "utt_id\tseconds\taccent\tvariant\tseen\trate_wpm\tpitch\tsnr_db\tnoise\trt60_s\n"
    rows = [
        f"{p.utt_id}\t{durations[p.utt_id]:.3f}\t{p.accent}\t{p.variant or 'default'}\t"
        f"{int(p.seen)}\t{p.prosody.rate_wpm}\t{p.prosody.pitch}\t"
        f"{'' if p.snr_db is None else f'{p.snr_db:.1f}'}\t"
        f"{p.noise_color if p.snr_db is not None else ''}\t"
        f"{'' if p.rt60_s is None else f'{p.rt60_s:.2f}'}\n"
        for p in plans
    ]
    (root / "utterances.tsv").write_text(header + "".join(rows))


def build_corpus(cfg: CorpusConfig, progress: bool = True) -> dict:
    """Write the requested splits under ``cfg.out``; returns the statistics also saved in corpus.json.

    Each split is built in ``SPLIT.partial`` and renamed into place only when complete, so an
    interrupted run never leaves a half-written split that looks finished. Worker processes start
    from a forkserver, so a script calling this needs the usual ``if __name__ == "__main__":``.
    """
    from tqdm import tqdm

    cfg.out.mkdir(parents=True, exist_ok=True)
    for split in cfg.splits:  # a replacement cut between two renames (no atomic exchange here)
        restore_folder(cfg.out / split)
    existing = [s for s in cfg.splits if (cfg.out / s).exists()]
    if existing and not cfg.overwrite:
        raise SpeechmpqError(
            f"{cfg.out} already has split(s) {', '.join(existing)}; pass --overwrite to replace them"
        )
    plans = plan_corpus(cfg)
    stats_path = cfg.out / "corpus.json"
    stats = json.loads(stats_path.read_text()) if stats_path.exists() else {"splits": {}}
    stats["config"] = cfg.to_dict()
    # forkserver: workers fork from a clean server process that has never loaded espeak, whatever
    # this process did before (a plain fork would inherit espeak state it may have touched).
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["speechmpq.train.corpus.build"])
    for split in cfg.splits:
        split_plans = [p for p in plans if p.split == split]
        staging = cfg.out / f"{split}.partial"
        shutil.rmtree(staging, ignore_errors=True)
        jobs = []
        for plan in split_plans:
            path = _flac_path(staging, plan)
            path.parent.mkdir(parents=True, exist_ok=True)
            jobs.append((plan, str(path)))
        started = time.time()
        durations: dict[str, float] = {}
        # maxtasksperchild=1: every utterance gets a new process that loads espeak afresh, so its
        # audio does not depend on what was spoken before it (or on this process's state).
        with context.Pool(cfg.jobs, maxtasksperchild=1) as pool:
            results = pool.imap(_render_to_file, jobs, chunksize=1)
            for utt_id, seconds in tqdm(results, total=len(jobs), desc=f"corpus {split}",
                                        unit="utt", disable=not progress):
                durations[utt_id] = seconds
        _write_split(staging, split_plans, durations)
        replace_folder(staging, cfg.out / split, sync=False)  # regenerable; thousands of files
        elapsed = time.time() - started
        seen = [p for p in split_plans if p.seen]
        stats["splits"][split] = {
            "utterances": len(split_plans),
            "hours": round(sum(durations.values()) / 3600.0, 4),
            "seen_voice_utterances": len(seen),
            "unseen_voice_utterances": len(split_plans) - len(seen),
            "distinct_words": len({w for p in split_plans for w in p.transcript.split()}),
            "generation_seconds": round(elapsed, 1),
            "jobs": cfg.jobs,
        }
    voices = voice_table()
    lines = ["speaker_id\taccent\tvariant\tseen_in_training\n"] + [
        f"{1000 + i}\t{a}\t{v or 'default'}\t{int(v in SEEN_VARIANTS)}\n"
        for i, (a, v) in enumerate(voices)
    ]
    atomic_write(cfg.out / "speakers.tsv", "".join(lines))
    atomic_write(stats_path, json.dumps(stats, indent=2) + "\n")
    return stats
