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
import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import torch

WORD = re.compile(r"[a-z0-9]+")


def item_text(item) -> str:
    """What the text scorer reads of a catalog item: its title and brand."""
    return f"{item.title} {item.brand}"


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
        # The matrix as sparse CSR, and its transpose (the inverted index, word -> items): derived, never saved.
        order = torch.argsort(self.col, stable=True)
        counts = torch.bincount(self.col, minlength=self.num_words)
        offsets = torch.zeros(self.num_words + 1, dtype=torch.long)
        offsets[1:] = counts.cumsum(0)
        rows = torch.repeat_interleave(torch.arange(self.num_items), self.crow[1:] - self.crow[:-1])
        n, v = self.num_items, self.num_words
        with warnings.catch_warnings():  # "sparse CSR support is in beta": products of CSR and dense are stable
            warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
            # Checked once here: a corrupt matrix (a loaded file) fails now, not as a crash inside a product.
            by_item = torch.sparse_csr_tensor(self.crow, self.col, self.val, size=(n, v), check_invariants=True)
            by_word = torch.sparse_csr_tensor(offsets, rows[order], self.val[order], size=(v, n),
                                              check_invariants=True)  # fmt: skip
        norms = torch.zeros(n).index_add_(0, rows, self.val * self.val)  # squared row norms (1, or 0 if no word)
        object.__setattr__(self, "_by_item", by_item)
        object.__setattr__(self, "_by_word", by_word)
        object.__setattr__(self, "_norms", norms)

    @classmethod
    def fit(cls, texts: Sequence[str], min_df: int = 2, decay: float = 0.5) -> TextModel:
        vocab, idf = _vocabulary(texts, min_df)
        crow, col, val = _rows(texts, vocab, idf, [0], [], [])
        return cls(
            torch.tensor(crow, dtype=torch.long),
            torch.tensor(col, dtype=torch.long),
            torch.tensor(val, dtype=torch.float),
            len(vocab),
            decay,
        )

    def extend(self, fitted_texts: Sequence[str], new_texts: Sequence[str], min_df: int = 2) -> TextModel:
        """This model with rows for ``new_texts`` appended, weighted with the fitted vocabulary and idf, so an
        added item is scored by its own words before anyone bought it. The model keeps no vocabulary, so it is
        recovered by refitting ``fitted_texts`` (the texts it was fitted on, in order); a refit that does not
        reproduce this model raises ``ValueError``, because the new rows would then mean other words. The idf
        is not updated: the existing rows keep their values and a word the fitted texts lacked counts for
        nothing (the next refresh refits over every item)."""
        refit = TextModel.fit(fitted_texts, min_df, self.decay)
        if (refit.num_words != self.num_words or not torch.equal(refit.crow, self.crow)
                or not torch.equal(refit.col, self.col) or not torch.allclose(refit.val, self.val)):  # fmt: skip
            raise ValueError(f"the text scorer ({self.num_items} items, {self.num_words} words) was not fitted on "
                             f"these {len(fitted_texts)} texts with min_df={min_df}")  # fmt: skip
        vocab, idf = _vocabulary(fitted_texts, min_df)
        crow, col, val = _rows(new_texts, vocab, idf, self.crow.tolist(), self.col.tolist(), self.val.tolist())
        return TextModel(torch.tensor(crow, dtype=torch.long), torch.tensor(col, dtype=torch.long),
                         torch.tensor(val, dtype=torch.float), self.num_words, self.decay)  # fmt: skip

    @property
    def num_items(self) -> int:
        return self.crow.shape[0] - 1

    def scores(self, history: Sequence[int]) -> torch.Tensor:
        """(N,) decayed cosine similarity to the history; an item's similarity to
        itself is left out, so a history item scores only by its neighbours."""
        return self.scores_batch([history])[0]

    def scores_batch(self, histories: Sequence[Sequence[int]]) -> torch.Tensor:
        """(B, N) :meth:`scores` of each history, as two sparse products for the whole batch:
        ``X (X^T d)``, where ``d`` weights each history item by ``decay**distance``."""
        weights = torch.zeros(len(histories), self.num_items)
        for row, history in enumerate(histories):
            for distance, item in enumerate(reversed(history)):
                weights[row, item] += self.decay**distance
        query = self._by_word @ weights.T  # (V, B): the decayed sum of the history's rows
        out = (self._by_item @ query).T  # (B, N)
        out -= weights * self._norms  # each history item's similarity to itself
        return out.clamp(min=0.0)

    def nearest(self, items: Sequence[int], candidates: torch.Tensor, k: int = 1,
                batch: int = 256) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
        """(positions, cosines), each (len(items), k): the ``k`` items where ``candidates`` (bool, over the first
        ``len(candidates)`` items) is true whose text is nearest each of ``items``, best first (an item is never
        its own neighbour). A cosine of 0 means no word in common, or fewer than ``k`` candidates: such a
        neighbour is no evidence, and callers skip it."""
        k = min(k, candidates.shape[0])
        positions, cosines = [], []
        for start in range(0, len(items), batch):
            scores = self.scores_batch([[i] for i in items[start:start + batch]])[:, :candidates.shape[0]]
            best = torch.topk(scores * candidates, k, dim=1)
            positions.append(best.indices)
            cosines.append(best.values)
        if not positions:
            return torch.zeros(0, k, dtype=torch.long), torch.zeros(0, k)
        return torch.cat(positions), torch.cat(cosines)

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


def _vocabulary(texts: Sequence[str], min_df: int) -> tuple[dict[str, int], dict[str, float]]:
    """Word -> column, and word -> idf ``log(N / df)``, over ``texts``."""
    docs = [words(t) for t in texts]
    df = Counter(w for doc in docs for w in set(doc))
    vocab = {w: i for i, w in enumerate(sorted(w for w, c in df.items() if c >= min_df))}
    return vocab, {w: math.log(len(docs) / df[w]) for w in vocab}


def _rows(texts: Sequence[str], vocab: dict[str, int], idf: dict[str, float], crow: list[int], col: list[int],
          val: list[float]) -> tuple[list[int], list[int], list[float]]:  # fmt: skip
    """Append the L2-normalised sublinear TF-IDF row of each text to the CSR lists ``crow``, ``col``, ``val``."""
    for text in texts:
        tf = Counter(w for w in words(text) if w in vocab)
        row = sorted((vocab[w], (1 + math.log(c)) * idf[w]) for w, c in tf.items())
        norm = math.sqrt(sum(v * v for _, v in row)) or 1.0
        col.extend(i for i, _ in row)
        val.extend(v / norm for _, v in row)
        crow.append(len(col))
    return crow, col, val
