r"""pocketsphinx's binary "trie" LM (``*.lm.bin``, header "Trie Language Model") read with numpy into
n-gram arrays: how ``speechmpq lm --from-pocketsphinx`` gets the general English trigram out of
pocketsphinx's wheel straight into ``NGramLM`` (pocketsphinx's own ARPA writer crashes on this file, see
the last note).

Format (pocketsphinx src/lm/ngram_model_trie.c, lm_trie.c, lm_trie_quant.c,
bitarr.c; all little-endian on the usual platforms, SWAP_LM_TRIE only on BE):

    char[19]   "Trie Language Model"          (no NUL)
    uint8      order N
    uint32     counts[N]                      (n-gram counts per order)
    -- only if N > 1: quantizer --
    int32      dummy (= 1, formerly quantization type)
    float32    values[(N-2)*(65536+65536) + 65536]
               for each middle order k=2..N-1: prob bins[65536], bo bins[65536];
               then longest-order prob bins[65536]
    -- unigrams --
    (counts[0]+1) x {float32 prob, float32 bo, uint32 next}
               (last one is a sentinel; [next(w), next(w+1)) is the range of
               bigram-trie entries whose *last* word is w)
    -- only if N > 1: bit-packed arrays (KenLM-style reversed trie) --
    for k = 2..N-1, "middle" array:
        entry i at bit offset i*total_bits:
          word  (word_bits = required_bits(counts[0]))
          bo    quant index (16 bits)         \ written as one 32-bit field
          prob  quant index (16 bits)         / (prob<<16 | bo)
          next  (required_bits(counts[k]) bits): start of child range in the
                next-order array; end = next field of entry i+1
        size = ((counts[k-1]+1)*total_bits+7)//8 + 8 bytes
    longest (order N) array:
        entry i: word (word_bits), prob quant index (16 bits)
        size = ((counts[N-1]+1)*total_bits+7)//8 + 8 bytes
    Bits are read LSB-first from a little-endian word at byte offset>>3.
    -- words --
    uint32     k = total bytes of strings; then k bytes of NUL-terminated words

The trie is keyed in *reverse* order: unigram w_n -> middle entry w_{n-1} ->
... -> w_1, and an entry at depth k stores the prob/backoff of the n-gram
"w_{n-k+1} ... w_n".  Probabilities, backoffs and quant bins are stored as
float "logmath" values (natural log scaled by 1/ln(base), base 1.0001 by
default, shift 0), i.e. log10 p = value * log10(1.0001).

Note: pocketsphinx inserts "dummy" middle entries (prob = backed-off prob,
bo ~ 0) so that higher-order n-grams whose (n-1)-gram suffix was missing from
the source ARPA are reachable; they are included in the header counts and
are emitted here like ordinary n-grams (they do not change any probability).

The header counts can exceed what is actually stored: lm_trie_fix_counts()
over-counts dummies, the arrays are sized from those counts and the surplus
entries stay zero.  For en-us.lm.bin the header says 2051547 bigrams but only
2051541 are reachable (this is why pocketsphinx's own ARPA writer hits NULL
entries).  We walk the trie from the unigram "next" pointers and keep what
is reachable.
"""
from __future__ import annotations

import numpy as np

from speechmpq.errors import ModelError

TRIE_HDR = b"Trie Language Model"
QBITS = 16  # prob_bits = bo_bits = 16
LOGMATH_BASE = 1.0001


def is_trie_lm(path) -> bool:
    """Whether PATH starts with this format's header (False for anything unreadable)."""
    try:
        with open(path, "rb") as handle:
            return handle.read(len(TRIE_HDR)) == TRIE_HDR
    except OSError:
        return False


def required_bits(max_value):
    return int(max_value).bit_length()


def _read_bits(mem, bit_off, nbits):
    """Vectorised bitarr_read_int25/57: read nbits (<=57) at bit offsets."""
    bit_off = np.asarray(bit_off, dtype=np.int64)
    byte = bit_off >> 3
    shift = (bit_off & 7).astype(np.uint64)
    # gather 8 bytes little-endian (mem has >= 8 bytes padding at the end)
    v = np.zeros(bit_off.shape, dtype=np.uint64)
    for b in range(8):
        v |= mem[byte + b].astype(np.uint64) << np.uint64(8 * b)
    return ((v >> shift) & np.uint64((1 << nbits) - 1)).astype(np.int64)


class TrieLM:
    def __init__(self, path, base=LOGMATH_BASE):
        self.path = path
        self.log10_base = float(np.log10(base))
        with open(path, "rb") as f:
            data = f.read()
        self._data = data
        pos = 0
        if data[:len(TRIE_HDR)] != TRIE_HDR:
            raise ModelError(f"{path}: not a pocketsphinx trie LM (no 'Trie Language Model' header)")
        pos = len(TRIE_HDR)
        order = data[pos]
        pos += 1
        counts = np.frombuffer(data, "<u4", order, pos).astype(np.int64)
        pos += 4 * order
        self.order = order
        self.counts = [int(c) for c in counts]
        self.quant = None
        if order > 1:
            pos += 4  # dummy int32
            nvals = (order - 2) * (2 << QBITS) + (1 << QBITS)
            q = np.frombuffer(data, "<f4", nvals, pos)
            pos += 4 * nvals
            self.mid_prob_bins = []
            self.mid_bo_bins = []
            o = 0
            for _ in range(order - 2):
                self.mid_prob_bins.append(q[o:o + (1 << QBITS)])
                o += 1 << QBITS
                self.mid_bo_bins.append(q[o:o + (1 << QBITS)])
                o += 1 << QBITS
            self.long_prob_bins = q[o:o + (1 << QBITS)]
        n1 = self.counts[0]
        ug = np.frombuffer(data, np.dtype([("prob", "<f4"), ("bo", "<f4"),
                                           ("next", "<u4")]), n1 + 1, pos)
        pos += 12 * (n1 + 1)
        self.uni_prob = ug["prob"][:n1]
        self.uni_bo = ug["bo"][:n1]
        self.uni_next = ug["next"].astype(np.int64)  # n1+1 entries
        self.word_bits = required_bits(n1)
        self.arrays = []  # per order k=2..N: dict(mem, total_bits, next_bits)
        if order > 1:
            for k in range(2, order + 1):
                entries = self.counts[k - 1]
                if k < order:
                    next_bits = required_bits(self.counts[k])
                    total = self.word_bits + 2 * QBITS + next_bits
                else:
                    next_bits = 0
                    total = self.word_bits + QBITS
                size = ((1 + entries) * total + 7) // 8 + 8
                mem = np.frombuffer(data, np.uint8, size, pos)
                pos += size
                self.arrays.append(dict(mem=mem, total_bits=total,
                                        next_bits=next_bits, entries=entries))
        k = int(np.frombuffer(data, "<u4", 1, pos)[0])
        pos += 4
        raw = data[pos:pos + k]
        pos += k
        words = raw.split(b"\0")
        if words and words[-1] == b"":
            words.pop()
        if len(words) != n1:
            raise ModelError(f"{path}: {len(words)} words for {n1} unigrams")
        self.words = [w.decode("utf-8", "replace") for w in words]
        self.trailing_bytes = len(data) - pos

    # ---- raw decoding of the packed arrays -----------------------------
    def _decode_level(self, k, idx):
        """Decode entries idx (int64 array) of the order-k array.
        Returns word, prob(logmath float), bo (or None), next (or None)."""
        a = self.arrays[k - 2]
        off = idx * a["total_bits"]
        word = _read_bits(a["mem"], off, self.word_bits)
        off = off + self.word_bits
        if k < self.order:
            bo_i = _read_bits(a["mem"], off, QBITS)
            pr_i = _read_bits(a["mem"], off + QBITS, QBITS)
            nxt = _read_bits(a["mem"], off + 2 * QBITS, a["next_bits"])
            return (word, self.mid_prob_bins[k - 2][pr_i],
                    self.mid_bo_bins[k - 2][bo_i], nxt)
        pr_i = _read_bits(a["mem"], off, QBITS)
        return word, self.long_prob_bins[pr_i], None, None

    def _ranges(self, k, begin, end):
        """Concatenate index ranges [begin, end) -> (idx, owner)."""
        lens = end - begin
        if np.any(lens < 0):
            raise ModelError(f"{self.path}: corrupt trie (a negative range at order {k})")
        n = int(lens.sum())
        owner = np.repeat(np.arange(len(lens), dtype=np.int64), lens)
        idx = np.arange(n, dtype=np.int64) + np.repeat(
            begin - np.concatenate(([0], np.cumsum(lens)[:-1])), lens)
        return idx, owner

    def _child_ranges(self, k, idx):
        a = self.arrays[k - 2]
        base = self.word_bits + 2 * QBITS
        b = _read_bits(a["mem"], idx * a["total_bits"] + base, a["next_bits"])
        e = _read_bits(a["mem"], (idx + 1) * a["total_bits"] + base, a["next_bits"])
        return b, e

    def ngram_arrays(self):
        """Yield (k, words[n_k, k] int32 in forward order w1..wk,
        log10 prob float64[n_k], log10 bo float64[n_k] or None) for k=1..N.
        Arrays are sorted lexicographically by word ids (w1, w2, ...)."""
        c = self.log10_base
        n1 = self.counts[0]
        yield (1, np.arange(n1, dtype=np.int32)[:, None],
               self.uni_prob.astype(np.float64) * c,
               self.uni_bo.astype(np.float64) * c if self.order > 1 else None)
        # parent pointer ranges: for level 2 parents are unigrams
        parent_begin = self.uni_next[:-1]
        parent_end = self.uni_next[1:]
        # rev_words: columns = [w_n, w_{n-1}, ...] of the parents, per parent
        parent_rev = np.arange(n1, dtype=np.int32)[:, None]
        for k in range(2, self.order + 1):
            idx, owner = self._ranges(k, parent_begin, parent_end)
            n_actual = len(idx)
            word, prob, bo, nxt = self._decode_level(k, idx)
            rev = np.empty((n_actual, k), dtype=np.int32)
            rev[:, :k - 1] = parent_rev[owner]
            rev[:, k - 1] = word
            del owner
            fwd = rev[:, ::-1]
            order_ix = np.lexsort(tuple(fwd[:, j] for j in range(k - 1, -1, -1)))
            yield (k, np.ascontiguousarray(fwd[order_ix]),
                   prob.astype(np.float64)[order_ix] * c,
                   None if bo is None else bo.astype(np.float64)[order_ix] * c)
            if k < self.order:
                parent_begin, parent_end = self._child_ranges(k, idx)
                parent_rev = rev
            del rev, fwd, idx


def read_trie_lm(path):
    """Return (words, ngrams) where ngrams[k] = (ids int32[n,k] forward order,
    log10 prob float64[n], log10 backoff float64[n] or None)."""
    lm = TrieLM(path)
    ngrams = {}
    for k, ids, p, b in lm.ngram_arrays():
        ngrams[k] = (ids, p, b)
    return lm.words, ngrams
