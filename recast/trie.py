"""Prefix tree over item codes: which token may follow a given decoded prefix.

The tree is stored as flat tensors (CSR: each node's children are a slice of
``child_tokens``/``child_nodes``), so expanding a whole batch of beams is a few
vectorised ops, and the decoder's state is just one node id per beam. State moves
only through :meth:`ItemTrie.expand`'s explicit ``next_node`` table: nothing is
inferred from counters or from the previous token alone (the bug that lets
"tries" in open frameworks emit invalid items).

Items leave the trie without a rebuild. :meth:`ItemTrie.live_nodes` marks, per request, the nodes that still
lead to an item not removed, and :func:`keep_live` drops the edges into the others. The allowed sets are then
exactly those of a trie built without the removed items, and node ids stay the same. A retirement therefore
applies to every engine at once: the vLLM processor's prefix table keeps pointing at the right nodes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

ROOT = 0


@dataclass(frozen=True)
class ItemTrie:
    child_offsets: torch.Tensor  # (num_nodes + 1,) node n's children: [offsets[n], offsets[n+1])
    child_tokens: torch.Tensor  # (num_edges,)
    child_nodes: torch.Tensor  # (num_edges,)
    leaf_item: torch.Tensor  # (num_nodes,) catalog position at a leaf, -1 elsewhere
    depth: int
    vocab_size: int

    @property
    def num_nodes(self) -> int:
        return self.leaf_item.shape[0]

    @property
    def dead(self) -> int:
        """A node with no children: where a beam with no valid continuation rests."""
        return self.num_nodes - 1

    @classmethod
    def build(cls, codes: torch.Tensor, vocab_size: int, items: torch.Tensor | None = None) -> ItemTrie:
        """codes (N, L) token ids; ``items`` (N,) the position each code stands for
        (default 0..N-1). Restricting ``codes`` to some rows gives a trie of a subset."""
        N, L = codes.shape
        items = torch.arange(N) if items is None else items
        children: list[dict[int, int]] = [{}]
        leaf = [-1]
        for row, item in zip(codes.tolist(), items.tolist()):
            node = ROOT
            for token in row:
                nxt = children[node].get(token)
                if nxt is None:
                    nxt = len(children)
                    children[node][token] = nxt
                    children.append({})
                    leaf.append(-1)
                node = nxt
            if leaf[node] != -1:
                raise ValueError(f"items {leaf[node]} and {item} have the same code {row}")
            leaf[node] = item
        children.append({})  # the dead node
        leaf.append(-1)
        offsets, tokens, nodes = [0], [], []
        for kids in children:
            for token, child in sorted(kids.items()):
                tokens.append(token)
                nodes.append(child)
            offsets.append(len(tokens))
        return cls(
            child_offsets=torch.tensor(offsets, dtype=torch.long),
            child_tokens=torch.tensor(tokens, dtype=torch.long),
            child_nodes=torch.tensor(nodes, dtype=torch.long),
            leaf_item=torch.tensor(leaf, dtype=torch.long),
            depth=L,
            vocab_size=vocab_size,
        )

    def live_nodes(self, removed: torch.Tensor) -> torch.Tensor:
        """removed (B, N) bool over catalog positions -> (B, num_nodes) bool: True where a node still leads to at
        least one item that is not removed (a prefix whose items are all removed is dead too)."""
        B = removed.shape[0]
        leaves = (self.leaf_item >= 0).nonzero().squeeze(1)
        live = torch.zeros(B, self.num_nodes, dtype=torch.bool)
        live[:, leaves] = ~removed[:, self.leaf_item[leaves]]
        parents = torch.repeat_interleave(torch.arange(self.num_nodes), self.child_offsets.diff())
        for _ in range(self.depth):  # one level further up per pass; leaves are at depth ``depth``
            below = torch.zeros(B, self.num_nodes, dtype=torch.int32)
            below.index_add_(1, parents, live[:, self.child_nodes].to(torch.int32))
            live = live | (below > 0)
        return live

    def expand(self, nodes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """For nodes (M,): allowed (M, V) bool and next_node (M, V) long (-1 where not allowed)."""
        M = nodes.shape[0]
        start = self.child_offsets[nodes]
        count = self.child_offsets[nodes + 1] - start
        rows = torch.repeat_interleave(torch.arange(M), count)
        first = torch.repeat_interleave(start - (count.cumsum(0) - count), count)
        edges = first + torch.arange(rows.shape[0])
        allowed = torch.zeros(M, self.vocab_size, dtype=torch.bool)
        allowed[rows, self.child_tokens[edges]] = True
        next_node = torch.full((M, self.vocab_size), -1, dtype=torch.long)
        next_node[rows, self.child_tokens[edges]] = self.child_nodes[edges]
        return allowed, next_node


def keep_live(allowed: torch.Tensor, next_node: torch.Tensor, live: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """``allowed`` (M, V) with the tokens into dead nodes dropped. ``live`` (R, num_nodes) is from
    :meth:`ItemTrie.live_nodes`, and ``rows`` (M,) gives the row of ``live`` that each of the M rows uses."""
    return allowed & live[rows[:, None], next_node.clamp(min=0)]
