"""Word-level vocabulary over SID tokens, and its Hugging Face form.

Token ids: the special tokens first, then every SID token the catalog uses,
grouped by level (level order, then code number). A prompt is
``[BOS] item_1 ... item_n`` (each item its ``code_length`` tokens, oldest first);
the policy then decodes exactly one item. Because ids are contiguous per level, a
level's tokens form one id range, which the trie and the engines rely on.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from recast.catalog import SID_TOKEN, Catalog

PAD, BOS, EOS, UNK = "[PAD]", "[BOS]", "[EOS]", "[UNK]"
SPECIAL_TOKENS = (PAD, BOS, EOS, UNK)


def _token_key(token: str) -> tuple[str, int]:
    match = SID_TOKEN.fullmatch(token)
    assert match is not None, token
    return match.group(1), int(match.group(2))


@dataclass(frozen=True)
class SidTokenizer:
    vocab: tuple[str, ...]  # id -> token

    @classmethod
    def from_catalog(cls, catalog: Catalog) -> SidTokenizer:
        level_letters = [_token_key(t)[0] for t in catalog.items[0].code]
        tokens = {t for item in catalog.items for t in item.code}
        ordered = sorted(tokens, key=lambda t: (level_letters.index(_token_key(t)[0]), _token_key(t)[1]))
        return cls(vocab=SPECIAL_TOKENS + tuple(ordered))

    def __post_init__(self) -> None:
        object.__setattr__(self, "_ids", {t: i for i, t in enumerate(self.vocab)})

    def __len__(self) -> int:
        return len(self.vocab)

    @property
    def pad_id(self) -> int:
        return self._ids[PAD]

    @property
    def bos_id(self) -> int:
        return self._ids[BOS]

    @property
    def eos_id(self) -> int:
        return self._ids[EOS]

    def token_id(self, token: str) -> int:
        return self._ids[token]

    def item_codes(self, catalog: Catalog) -> torch.Tensor:
        """(N, L) token ids of every catalog item's code, in catalog order."""
        return torch.tensor([[self._ids[t] for t in item.code] for item in catalog.items], dtype=torch.long)

    def encode_history(self, item_codes: torch.Tensor, positions: list[int]) -> list[int]:
        """Prompt ids for a history given as catalog positions (oldest first)."""
        return [self.bos_id] + item_codes[positions].reshape(-1).tolist()

    def to_hf(self):
        """A ``PreTrainedTokenizerFast`` with the same ids, for vLLM and transformers.

        A WordLevel model whose pre-tokenizer isolates ``<x_n>`` and ``[NAME]``
        tokens, so ``"[BOS]<a_1><b_2>"`` and ``"[BOS] <a_1> <b_2>"`` encode alike.
        """
        from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
        from transformers import PreTrainedTokenizerFast

        core = Tokenizer(models.WordLevel(vocab={t: i for i, t in enumerate(self.vocab)}, unk_token=UNK))
        core.pre_tokenizer = pre_tokenizers.Sequence(
            [
                pre_tokenizers.WhitespaceSplit(),
                pre_tokenizers.Split(Regex(r"<[a-z]_\d+>|\[[A-Z]+\]"), behavior="isolated"),
            ]
        )
        core.decoder = decoders.Fuse()
        return PreTrainedTokenizerFast(
            tokenizer_object=core, pad_token=PAD, bos_token=BOS, eos_token=EOS, unk_token=UNK
        )
