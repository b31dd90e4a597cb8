"""How the project's own SIDs compare with the shipped ones (issue 16).

For each item, its ``k`` nearest neighbours by text; of those, the share that share the item's first
code, and its first two codes, under the shipped SIDs and under the learnt ones. A SID whose prefixes
group similar items scores high. ``chance`` is the share a random other item would give (the sum of
squared prefix-group shares), which differs between the two: a more balanced code has a lower chance,
so ``lift`` (share / chance) is shown too. Neighbours come from two text spaces: the served text scorer's
(``recast.text``: TF-IDF over title and brand, cosine), which neither set of SIDs was built from, and the
learnt tokenizer's own (title, brand, description; the space the learnt codes quantise, so it favours them).

The agreement proper: of the (item, neighbour) pairs that share a prefix under the shipped SIDs, the
share that share it under the learnt ones, and the converse. Also: adjusted Rand index and normalised
mutual information between the shipped and learnt first-level clusters, collisions (items per SID) and
codebook usage per level.

    python -m ops.experiments.sids --data data/amazon18-industrial --learnt runs/sids/tok/sid_index.json \
        [--tokenizer runs/sids/tok] [--k 10]

(``recast sids measure`` is the same.)
"""

from __future__ import annotations

import argparse
import json
import math
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import torch


def neighbours(similarity: torch.Tensor, k: int) -> torch.Tensor:
    """(N, k) indices of each row's ``k`` most similar other rows of an (N, N) similarity matrix."""
    sims = similarity.clone()
    sims.fill_diagonal_(-math.inf)  # never one's own neighbour
    return torch.topk(sims, k, dim=1, sorted=True).indices


def cosine(vectors: torch.Tensor) -> torch.Tensor:
    x = torch.nn.functional.normalize(vectors, dim=1)
    return x @ x.T


def text_scorer_similarity(text, chunk: int = 512) -> torch.Tensor:
    """(N, N) the served text scorer's item-to-item cosine (``recast.text.TextModel``), exact."""
    n = text.num_items
    return torch.cat([text.scores_batch([[i] for i in range(s, min(s + chunk, n))]) for s in range(0, n, chunk)])


def prefix_ids(codes: Sequence[Sequence[str]], depth: int) -> torch.Tensor:
    """(N,) an integer per distinct ``depth``-token prefix."""
    ids: dict[tuple[str, ...], int] = {}
    return torch.tensor([ids.setdefault(tuple(c[:depth]), len(ids)) for c in codes])


def neighbour_share(groups: torch.Tensor, knn: torch.Tensor) -> float:
    """Mean share of each item's neighbours in its own group."""
    return float((groups[knn] == groups.unsqueeze(1)).float().mean())


def pair_agreement(a: torch.Tensor, b: torch.Tensor, knn: torch.Tensor) -> float:
    """Of the (item, neighbour) pairs in one ``a`` group, the share also in one ``b`` group."""
    same_a = a[knn] == a.unsqueeze(1)
    same_b = b[knn] == b.unsqueeze(1)
    return float((same_a & same_b).sum() / same_a.sum().clamp(min=1))


def chance_share(groups: torch.Tensor) -> float:
    """The share a uniformly random *other* item would be in one's group."""
    sizes = torch.bincount(groups).float()
    n = groups.shape[0]
    return float((sizes * (sizes - 1)).sum() / (n * (n - 1)))


def adjusted_rand(a: torch.Tensor, b: torch.Tensor) -> float:
    pairs = Counter(zip(a.tolist(), b.tolist()))
    comb = lambda n: n * (n - 1) / 2  # noqa: E731
    index = sum(comb(n) for n in pairs.values())
    rows = sum(comb(n) for n in Counter(a.tolist()).values())
    cols = sum(comb(n) for n in Counter(b.tolist()).values())
    expected = rows * cols / comb(a.shape[0])
    top = (rows + cols) / 2
    return (index - expected) / (top - expected) if top != expected else 1.0


def normalised_mutual_information(a: torch.Tensor, b: torch.Tensor) -> float:
    """I(a; b) / mean(H(a), H(b)) (the arithmetic normalisation)."""
    n = a.shape[0]
    pa, pb, pab = Counter(a.tolist()), Counter(b.tolist()), Counter(zip(a.tolist(), b.tolist()))
    h = lambda counts: -sum(c / n * math.log(c / n) for c in counts.values())  # noqa: E731
    mi = sum(c / n * math.log(c * n / (pa[x] * pb[y])) for (x, y), c in pab.items())
    denominator = (h(pa) + h(pb)) / 2
    return mi / denominator if denominator > 0 else 1.0


def collisions(codes: Sequence[Sequence[str]]) -> dict:
    per_sid = Counter(tuple(c) for c in codes)
    shared = [n for n in per_sid.values() if n > 1]
    return {
        "sids": len(per_sid),
        "shared_sids": len(shared),
        "items_in_shared_sids": sum(shared),
        "max_items_per_sid": max(per_sid.values()),
        "items_per_sid": len(codes) / len(per_sid),
    }


def usage(codes: Sequence[Sequence[str]], sizes: Sequence[int] | None = None) -> list[dict]:
    """Per level: distinct tokens used (of ``sizes[l]`` where known) and the usage perplexity (exp entropy)."""
    out = []
    for level in range(len(codes[0])):
        counts = Counter(c[level] for c in codes)
        n = sum(counts.values())
        perplexity = math.exp(-sum(c / n * math.log(c / n) for c in counts.values()))
        out.append({"used": len(counts), "size": sizes[level] if sizes else None, "perplexity": perplexity,
                    "largest": max(counts.values())})  # fmt: skip
    return out


def compare(shipped: Sequence[Sequence[str]], learnt: Sequence[Sequence[str]],
            spaces: dict[str, torch.Tensor], k: int = 10) -> dict:  # fmt: skip
    """Every figure of the module docstring; ``spaces``: name -> (N, N) item similarities, in ``shipped`` order."""
    report: dict = {"k": k, "items": len(shipped), "neighbours": {}, "agreement": {}}
    for space, vectors in spaces.items():
        knn = neighbours(vectors, k)
        rows = {}
        for name, codes in (("shipped", shipped), ("learnt", learnt)):
            for depth in (1, 2):
                groups = prefix_ids(codes, depth)
                share, chance = neighbour_share(groups, knn), chance_share(groups)
                rows[f"{name}@{depth}"] = {"share": share, "chance": chance, "lift": share / chance if chance else None}
        report["neighbours"][space] = rows
        report["agreement"][space] = {
            depth: {"learnt_given_shipped": pair_agreement(prefix_ids(shipped, depth), prefix_ids(learnt, depth), knn),
                    "shipped_given_learnt": pair_agreement(prefix_ids(learnt, depth), prefix_ids(shipped, depth), knn)}
            for depth in (1, 2)
        }  # fmt: skip
    first_shipped, first_learnt = prefix_ids(shipped, 1), prefix_ids(learnt, 1)
    report["level1_ari"] = adjusted_rand(first_shipped, first_learnt)
    report["level1_nmi"] = normalised_mutual_information(first_shipped, first_learnt)
    report["collisions"] = {"shipped": collisions(shipped), "learnt": collisions(learnt)}
    report["usage"] = {"shipped": usage(shipped), "learnt": usage(learnt)}
    return report


def _row(*cells) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def table(report: dict) -> str:
    lines = [f"items {report['items']}, k = {report['k']} nearest neighbours by text", "",
             _row("space", "SIDs", "prefix", "share of neighbours sharing it", "chance", "lift"), _row(*["---"] * 6)]
    for space, rows in report["neighbours"].items():
        for key, r in rows.items():
            name, depth = key.split("@")
            lines.append(_row(space, name, f"{depth} code(s)", f"{r['share']:.3f}", f"{r['chance']:.4f}",
                              f"{r['lift']:.1f}"))
    lines += ["", "Neighbour pairs sharing a prefix under one set of SIDs that share it under the other too:", "",
              _row("space", "prefix", "shipped-sharing pairs, learnt shares too", "learnt-sharing pairs, shipped too"),
              _row(*["---"] * 4)]
    for space, depths in report["agreement"].items():
        for depth, a in depths.items():
            lines.append(_row(space, f"{depth} code(s)", f"{a['learnt_given_shipped']:.3f}",
                              f"{a['shipped_given_learnt']:.3f}"))
    lines += ["", f"first level, shipped vs learnt: ARI {report['level1_ari']:.3f}, NMI {report['level1_nmi']:.3f}",
              "", _row("SIDs", "distinct SIDs", "shared SIDs", "items in shared SIDs", "max items per SID"),
              _row(*["---"] * 5)]
    for name, c in report["collisions"].items():
        lines.append(_row(name, c["sids"], c["shared_sids"], c["items_in_shared_sids"], c["max_items_per_sid"]))
    lines += ["", _row("SIDs", "level", "tokens used", "usage perplexity", "largest token's items"),
              _row(*["---"] * 5)]
    for name, levels in report["usage"].items():
        for level, u in enumerate(levels):
            lines.append(_row(name, level, u["used"], f"{u['perplexity']:.1f}", u["largest"]))
    return "\n".join(lines)  # fmt: skip


def measure(data: Path, learnt_index: Path, tokenizer: Path | None = None, k: int = 10) -> dict:
    """Load the shipped catalog, the learnt ``sid_index.json`` and the text spaces, and :func:`compare`."""
    from recast.dataset import load_catalog, load_item_entries
    from recast.text import TextModel

    catalog = load_catalog(data)
    learnt_raw = json.loads(learnt_index.read_text(encoding="utf-8"))
    missing = [i.item_id for i in catalog.items if i.item_id not in learnt_raw]
    if missing:
        raise ValueError(f"{learnt_index} lacks {len(missing)} of the catalog's items, e.g. {missing[:5]}")
    shipped = [item.sid for item in catalog.items]
    learnt = [tuple(learnt_raw[item.item_id]) for item in catalog.items]
    text = TextModel.fit([f"{i.title} {i.brand}" for i in catalog.items])  # as the served text scorer is fitted
    spaces = {"title+brand tf-idf": text_scorer_similarity(text)}
    if tokenizer is not None:
        from recast.sids.store import load_tokenizer

        entries = load_item_entries(data)
        spaces["learnt tokenizer's"] = cosine(
            load_tokenizer(tokenizer).featurizer.embed([entries[i.item_id] for i in catalog.items])
        )
    return compare(shipped, learnt, spaces, k)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m ops.experiments.sids", description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=Path("data/amazon18-industrial"))
    parser.add_argument("--learnt", type=Path, required=True, help="sid_index.json written by 'recast sids fit'")
    parser.add_argument("--tokenizer", type=Path, help="the tokenizer directory: adds its text space")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    report = measure(args.data, args.learnt, args.tokenizer, args.k)
    print(table(report))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
