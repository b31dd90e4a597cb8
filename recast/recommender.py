"""The served ranking, defined once: constrained beam search, then fusion (or, where the checkpoint has one,
the learned ranker over the scorers' candidates with the beam blended in).

Offline evaluation and every serving engine go through this class, so the list
``recast eval --predictions`` writes is the list the service would serve.
Histories are catalog positions, oldest first; only the last ``max_history``
items enter the prompt (the policy was trained on at most that many), and the last
``scorer_history`` items reach the transition and text scorers. The two cuts differ
for a policy trained on short contexts: its prompt keeps one or two items, while the
scorers still read the ten they were measured on. Such a policy may also be decoded once per
recent history item (``anchors``, :mod:`recast.anchors`), its beams merged into one per request.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from recast.anchors import AnchorLayout, anchor_histories, merge_beams
from recast.baselines import TransitionModel
from recast.beam import BeamResult, BeamSearchConfig, beam_search
from recast.checkpoint import Checkpoint
from recast.fusion import FusionConfig, fuse_batch, fuse_ranked
from recast.model import SidPolicy
from recast.ranker import Ranker, candidates
from recast.text import TextModel
from recast.tokenizer import SidTokenizer
from recast.trie import ItemTrie


@dataclass
class Recommender:
    model: SidPolicy
    tokenizer: SidTokenizer
    codes: torch.Tensor  # (N, L)
    transition: TransitionModel
    beam: BeamSearchConfig = field(default_factory=BeamSearchConfig)
    fusion: FusionConfig = field(default_factory=FusionConfig)
    max_history: int = 10  # the prompt's cut
    text: TextModel | None = None
    scorer_history: int = 10  # the transition and text scorers' cut
    anchors: int = 1  # prompts decoded per request, one per recent item (recast.anchors); 1: the history alone
    anchor_decay: float = 0.5  # an anchor's weight in the merge: decay ** its distance from the last item
    ranker: Ranker | None = None  # a learned ranker over the scorers' candidates (recast.ranker); None: the mix

    def __post_init__(self) -> None:
        if self.ranker is not None and self.text is None:
            raise ValueError("a ranker reads the text scorer's scores: give the recommender its text model")
        self.trie = ItemTrie.build(self.codes, len(self.tokenizer))

    @classmethod
    def from_checkpoint(
        cls, ckpt: Checkpoint, beam_width: int, fusion: FusionConfig | None = None, max_history: int = 10
    ) -> Recommender:
        """The checkpoint's served ranking. Its SFT config's history length wins over ``max_history`` for the
        prompt, which must be cut the way the policy was trained, and its anchors say how it is decoded; the
        scorers keep ``max_history`` items."""
        anchors, decay = ckpt.anchors()
        return cls(
            ckpt.model, ckpt.tokenizer, ckpt.codes, ckpt.transition,
            beam=BeamSearchConfig(beam_width), fusion=fusion or FusionConfig(),
            max_history=ckpt.prompt_history(max_history), text=ckpt.text,
            scorer_history=max_history, anchors=anchors, anchor_decay=decay, ranker=ckpt.ranker,
        )  # fmt: skip

    @property
    def num_items(self) -> int:
        return self.codes.shape[0]

    def prompts(self, histories: list[list[int]]) -> list[list[int]]:
        return [self.tokenizer.encode_history(self.codes, h[-self.max_history :]) for h in histories]

    def decode_inputs(self, histories: list[list[int]]) -> tuple[list[list[int]], AnchorLayout | None]:
        """The prompts an engine decodes for these histories and, with anchors, how their beams merge
        (:meth:`merge`); without, one prompt per history and no layout."""
        if self.anchors == 1:
            return self.prompts(histories), None
        prefixes, layout = anchor_histories(histories, self.anchors, self.anchor_decay)
        return self.prompts(prefixes), layout

    def merge(self, beams: BeamResult, layout: AnchorLayout | None, width: int) -> BeamResult:
        """An engine's beams for :meth:`decode_inputs`' prompts -> one beam of ``width`` per history."""
        return beams if layout is None else merge_beams(beams, layout, self.num_items, width)

    def policy(self, histories: list[list[int]]) -> BeamResult:
        """The policy alone: top ``beam.width`` items, scored by renormalised log-probabilities (with anchors,
        the log of their mixture)."""
        prompts, layout = self.decode_inputs(histories)
        beams = beam_search(self.model, self.trie, prompts, self.beam, self.tokenizer.pad_id)
        return self.merge(beams, layout, self.beam.width)

    def transition_scores(self, histories: list[list[int]]) -> torch.Tensor:
        """(B, N) transition scores, each on the last ``scorer_history`` items."""
        return torch.stack([self.transition.scores(h[-self.scorer_history :]) for h in histories])

    def text_scores(self, histories: list[list[int]]) -> torch.Tensor | None:
        if self.text is None:
            return None
        return self.text.scores_batch([h[-self.scorer_history :] for h in histories])

    def rank(
        self,
        histories: list[list[int]],
        beams: BeamResult,
        k: int,
        transition: torch.Tensor | None = None,
        text: torch.Tensor | None = None,
        removed: torch.Tensor | None = None,
    ) -> list[list[tuple[int, float]]]:
        """Fuse an engine's beams with the transition and text scorers: the served top-k
        per history. ``transition``/``text`` pass (B, N) scores already computed for these histories;
        ``removed`` (B, N) bool: items no row may list (see :func:`recast.fusion.fuse_batch`). With a ranker,
        the scorers' candidates are ranked by it and the beams blended in (:func:`recast.fusion.fuse_ranked`)."""
        transition = transition if transition is not None else self.transition_scores(histories)
        text = text if text is not None else self.text_scores(histories)
        if self.ranker is None:
            return fuse_batch(beams.items, beams.scores, transition, k, self.fusion, text, removed)
        cut = [h[-self.scorer_history :] for h in histories]
        cands = candidates(cut, self.transition, self.text, self.ranker.per_scorer, transition, text)
        ranked = self.ranker.probabilities(cands, self.num_items)
        return fuse_ranked(beams.items, beams.scores, ranked, k, self.ranker.policy_weight, self.fusion.temperature,
                           removed)  # fmt: skip

    def recommend(self, histories: list[list[int]], k: int) -> list[list[tuple[int, float]]]:
        return self.rank(histories, self.policy(histories), k)
