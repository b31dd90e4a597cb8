"""Item text -> a dense vector, the same way for the fitted catalog and for an item that joins it later.

An item's text is its ``items.json`` fields: title, brand, description and categories (the shipped
data set leaves categories empty, 3,457 of its 3,686 items have a description). Each field is a
TF-IDF vector over one vocabulary (lower-cased alphanumeric words, :func:`recast.text.words`, that occur
in at least ``min_df`` fitted items; sublinear tf; idf from the fitted items); the item's row is the
fields' L2-normalised vectors summed with ``field_weights`` and normalised again, so a long description
cannot drown the title. Rows are projected onto the top ``dim`` right singular vectors of the fitted
matrix (a randomised SVD with an explicit generator) and normalised to unit length, so k-means on them
clusters by cosine. The vocabulary, idf and basis are kept: a new item is featurised with the fitted
catalog's statistics, never refitted, so it lands where an existing item with its text would.
"""

from __future__ import annotations

import ast
import math
import warnings
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch

from recast.text import words

FIELDS = ("title", "brand", "description", "categories")
# The title names the product; brand, description and categories refine it.
DEFAULT_FIELD_WEIGHTS = {"title": 1.0, "brand": 0.5, "description": 0.5, "categories": 0.5}


def field_text(value) -> str:
    """Plain text of an ``items.json`` field: strings as they are, lists (or a list written as a Python literal,
    as the shipped descriptions are) joined with spaces.

    >>> field_text("['Waxed paper.', 'Pack of 1000']"), field_text(["Tools", ["Saws"]]), field_text(None)
    ('Waxed paper. Pack of 1000', 'Tools Saws', '')
    """
    if value is None:
        return ""
    if isinstance(value, list | tuple):
        return " ".join(field_text(v) for v in value)
    text = str(value)
    if text.startswith("["):
        try:
            return field_text(ast.literal_eval(text))
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            return text  # a list that does not parse (16 shipped descriptions): its words are still its words
    return text


def field_words(entry: Mapping) -> dict[str, list[str]]:
    """The words of each field of one item entry."""
    return {f: words(field_text(entry.get(f))) for f in FIELDS}


@dataclass(frozen=True)
class TextFeaturizer:
    vocab: tuple[str, ...]  # word id -> word
    idf: torch.Tensor  # (V,) log(N / df) over the fitted items
    basis: torch.Tensor  # (V, dim) the fitted matrix's top right singular vectors
    field_weights: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_FIELD_WEIGHTS))

    def __post_init__(self) -> None:
        object.__setattr__(self, "_ids", {w: i for i, w in enumerate(self.vocab)})
        object.__setattr__(self, "_idf", self.idf.tolist())  # read per word: a list is far faster than a tensor

    @property
    def dim(self) -> int:
        return self.basis.shape[1]

    @classmethod
    def fit(
        cls,
        entries: Sequence[Mapping],
        dim: int,
        generator: torch.Generator,
        min_df: int = 2,
        field_weights: Mapping[str, float] | None = None,
    ) -> TextFeaturizer:
        weights = dict(DEFAULT_FIELD_WEIGHTS if field_weights is None else field_weights)
        unknown = set(weights) - set(FIELDS)
        if unknown:
            raise ValueError(f"unknown text field(s) {sorted(unknown)}; fields are {list(FIELDS)}")
        if dim < 1:
            raise ValueError(f"dim must be >= 1, got {dim}")
        docs = [field_words(e) for e in entries]
        df = Counter(w for doc in docs for w in set().union(*doc.values()))
        vocab = tuple(sorted(w for w, c in df.items() if c >= min_df))
        if not vocab:
            raise ValueError(f"no word occurs in {min_df} or more items: nothing to featurise with")
        n = len(docs)
        idf = torch.tensor([math.log(n / df[w]) for w in vocab], dtype=torch.float)
        partial = cls(vocab, idf, torch.zeros(len(vocab), 0), weights)
        basis = _top_right_singular_vectors(partial._rows(docs), dim, generator)
        return cls(vocab, idf, basis, weights)

    def tfidf(self, entries: Sequence[Mapping]) -> torch.Tensor:
        """(N, V) sparse CSR TF-IDF rows of ``entries`` under the fitted vocabulary and idf."""
        return self._rows([field_words(e) for e in entries])

    def embed(self, entries: Sequence[Mapping]) -> torch.Tensor:
        """(N, dim) unit vectors (an item with no known word: zeros)."""
        projected = self.tfidf(entries) @ self.basis
        return torch.nn.functional.normalize(projected, dim=1)

    def _rows(self, docs: list[dict[str, list[str]]]) -> torch.Tensor:
        crow, col, val = [0], [], []
        for doc in docs:
            row: dict[int, float] = {}
            for name, weight in self.field_weights.items():
                tf = Counter(self._ids[w] for w in doc[name] if w in self._ids)
                part = {i: (1 + math.log(c)) * self._idf[i] for i, c in tf.items()}
                norm = math.sqrt(sum(v * v for v in part.values()))
                for i, v in part.items():
                    if norm > 0:
                        row[i] = row.get(i, 0.0) + weight * v / norm
            norm = math.sqrt(sum(v * v for v in row.values())) or 1.0
            for i in sorted(row):
                col.append(i)
                val.append(row[i] / norm)
            crow.append(len(col))
        return _csr(crow, col, val, (len(docs), len(self.vocab)))


def _csr(crow: list[int], col: list[int], val: list[float], size: tuple[int, int]) -> torch.Tensor:
    with warnings.catch_warnings():  # "sparse CSR support is in beta": products of CSR and dense are stable
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        return torch.sparse_csr_tensor(
            torch.tensor(crow, dtype=torch.long),
            torch.tensor(col, dtype=torch.long),
            torch.tensor(val, dtype=torch.float),
            size=size,
            check_invariants=True,
        )


def _top_right_singular_vectors(X: torch.Tensor, dim: int, generator: torch.Generator,
                                oversample: int = 16) -> torch.Tensor:  # fmt: skip
    """(V, dim) top right singular vectors of a sparse (N, V) matrix: a randomised range finder with two power
    iterations (as ``recast.text_init.item_vectors``), padded with zero columns when the matrix has fewer."""
    N, V = X.shape
    XT = X.t().to_sparse_csr()
    r = min(dim + oversample, N, V)
    Q = torch.linalg.qr(X @ torch.randn(V, r, generator=generator)).Q  # (N, r)
    for _ in range(2):
        Q = torch.linalg.qr(X @ torch.linalg.qr(XT @ Q).Q).Q
    B = (XT @ Q).T  # (r, V) = Q^T X
    _, _, Vh = torch.linalg.svd(B, full_matrices=False)
    basis = Vh[:dim].T.contiguous()
    if basis.shape[1] < dim:
        basis = torch.cat((basis, torch.zeros(V, dim - basis.shape[1])), dim=1)
    return basis
