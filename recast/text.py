"""Content similarity: items whose titles read like the history's.

TF-IDF over each item's title and brand (lower-cased alphanumeric words, a word
must occur in at least ``min_df`` items, sublinear tf, rows L2-normalised). A
history scores every item by ``sum_k decay**k * cos(history item k, item)``
(k = 0 for the most recent). It reaches what counts cannot: 7.6% of held-out
targets never occur in any training row, yet their titles resemble the history's
(BENCHMARKS.md). Built from catalog text only, never from interactions.

The matrix is kept sparse: rows (CSR, item -> words) are what is saved, and an
inverted index (word -> items) is derived from them on construction, so a request
touches only the items sharing a word with its history, and the model grows with
the catalog's words, not with its square.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import torch

WORD = re.compile(r"[a-z0-9]+")


def words(text: str) -> list[str]:
    """
    >>> words("Loctite Heavy-Duty Epoxy, 8 oz")
    ['loctite', 'heavy', 'duty', 'epoxy', '8', 'oz']
    """
    return WORD.findall(text.lower())


@dataclass(frozen=True)
class TextModel:
    crow: torch.Tensor  # (N + 1,) CSR row offsets of the normalised TF-IDF matrix (N, V)
    col: torch.Tensor  # (nnz,)
    val: torch.Tensor  # (nnz,)
    num_words: int
    decay: float = 0.5

    def __post_init__(self) -> None:
        # Inverted index: the column-major copy of the matrix (CSC), derived, never saved.
        order = torch.argsort(self.col, stable=True)
        counts = torch.bincount(self.col, minlength=self.num_words)
        offsets = torch.zeros(self.num_words + 1, dtype=torch.long)
        offsets[1:] = counts.cumsum(0)
        rows = torch.repeat_interleave(torch.arange(self.num_items), self.crow[1:] - self.crow[:-1])
        object.__setattr__(self, "_word_offsets", offsets)
        object.__setattr__(self, "_word_items", rows[order])
        object.__setattr__(self, "_word_vals", self.val[order])

    @classmethod
    def fit(cls, texts: Sequence[str], min_df: int = 2, decay: float = 0.5) -> TextModel:
        docs = [words(t) for t in texts]
        df = Counter(w for doc in docs for w in set(doc))
        vocab = {w: i for i, w in enumerate(sorted(w for w, c in df.items() if c >= min_df))}
        n = len(docs)
        crow, col, val = [0], [], []
        for doc in docs:
            tf = Counter(w for w in doc if w in vocab)
            row = sorted((vocab[w], (1 + math.log(c)) * math.log(n / df[w])) for w, c in tf.items())
            norm = math.sqrt(sum(v * v for _, v in row)) or 1.0
            col.extend(i for i, _ in row)
            val.extend(v / norm for _, v in row)
            crow.append(len(col))
        return cls(
            torch.tensor(crow, dtype=torch.long),
            torch.tensor(col, dtype=torch.long),
            torch.tensor(val, dtype=torch.float),
            len(vocab),
            decay,
        )

    @property
    def num_items(self) -> int:
        return self.crow.shape[0] - 1

    def _row(self, item: int) -> tuple[torch.Tensor, torch.Tensor]:
        lo, hi = self.crow[item].item(), self.crow[item + 1].item()
        return self.col[lo:hi], self.val[lo:hi]

    def scores(self, history: Sequence[int]) -> torch.Tensor:
        """(N,) decayed cosine similarity to the history; an item's similarity to
        itself is left out, so a history item scores only by its neighbours."""
        query = torch.zeros(self.num_words)
        for distance, item in enumerate(reversed(history)):
            cols, vals = self._row(item)
            query.index_add_(0, cols, vals * self.decay**distance)
        out = torch.zeros(self.num_items)
        for word in query.nonzero().flatten().tolist():
            lo, hi = self._word_offsets[word].item(), self._word_offsets[word + 1].item()
            out.index_add_(0, self._word_items[lo:hi], self._word_vals[lo:hi] * query[word])
        for distance, item in enumerate(reversed(history)):
            _, vals = self._row(item)
            out[item] -= self.decay**distance * (vals * vals).sum()
        return out.clamp(min=0.0)

    def to_tensors(self) -> dict[str, torch.Tensor]:
        return {
            "crow": self.crow,
            "col": self.col,
            "val": self.val,
            "num_words": torch.tensor(self.num_words),
            "decay": torch.tensor(self.decay),
        }

    @classmethod
    def from_tensors(cls, t: dict[str, torch.Tensor]) -> TextModel:
        return cls(t["crow"], t["col"], t["val"], int(t["num_words"]), float(t["decay"]))
