"""The policy: a small Llama-architecture causal LM over SID tokens.

Parameter names match ``transformers.LlamaForCausalLM`` one to one, so the state
dict saved by ``recast.checkpoint`` loads unchanged in transformers and vLLM
(tests/recast/test_checkpoint.py checks the logits agree).

Three entry points, one per way the model is driven:
- ``forward(idx)``: training on right-padded sequences (causal SDPA).
- ``prefill(idx, valid)``: left-padded prompts -> next-token logits + prompt cache.
- ``decode(tokens, prefix, steps)``: one token for W beams per prompt. The prompt's
  keys/values are shared by all W beams through broadcasting rather than copied
  W times; only the few decoded tokens are cached per beam.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass(frozen=True)
class PolicyConfig:
    vocab_size: int
    n_layer: int = 2
    n_head: int = 4
    d_model: int = 128
    d_ff: int = 512
    max_positions: int = 128  # tokens: (history + 1) items x code length + BOS
    rope_theta: float = 10000.0
    rms_eps: float = 1e-6
    dropout: float = 0.0  # training only; inference (and the HF export) runs without it

    def __post_init__(self) -> None:
        if self.d_model % self.n_head:
            raise ValueError(f"d_model ({self.d_model}) must be a multiple of n_head ({self.n_head})")
        if (self.d_model // self.n_head) % 2:
            raise ValueError("head size d_model / n_head must be even for rotary embeddings")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_head

    def to_dict(self) -> dict:
        return asdict(self)

    def to_hf(self, bos_id: int, eos_id: int, pad_id: int) -> dict:
        """The ``config.json`` of the equivalent ``LlamaForCausalLM``."""
        return {
            "architectures": ["LlamaForCausalLM"],
            "model_type": "llama",
            "vocab_size": self.vocab_size,
            "hidden_size": self.d_model,
            "intermediate_size": self.d_ff,
            "num_hidden_layers": self.n_layer,
            "num_attention_heads": self.n_head,
            "num_key_value_heads": self.n_head,
            "head_dim": self.head_dim,
            "max_position_embeddings": self.max_positions,
            "rms_norm_eps": self.rms_eps,
            "rope_theta": self.rope_theta,
            "rope_parameters": {"rope_type": "default", "rope_theta": self.rope_theta},
            "hidden_act": "silu",
            "attention_bias": False,
            "attention_dropout": 0.0,
            "mlp_bias": False,
            "tie_word_embeddings": False,
            "bos_token_id": bos_id,
            "eos_token_id": eos_id,
            "pad_token_id": pad_id,
            "dtype": "float32",
        }


@dataclass
class PrefixCache:
    """Keys/values of a batch of prompts, per layer (B, nh, T, hd), and their layout."""

    keys: list[torch.Tensor]
    values: list[torch.Tensor]
    valid: torch.Tensor  # (B, T) bool, False on left padding
    lengths: torch.Tensor  # (B,) real prompt lengths

    def select(self, rows: torch.Tensor) -> PrefixCache:
        return PrefixCache(
            [k[rows] for k in self.keys], [v[rows] for v in self.values], self.valid[rows], self.lengths[rows]
        )


@dataclass
class StepCache:
    """Keys/values of the tokens decoded so far, per layer (B, W, nh, S, hd)."""

    keys: list[torch.Tensor]
    values: list[torch.Tensor]

    def reorder(self, parents: torch.Tensor) -> StepCache:
        """Keep, for each new beam (B, W), the cache of the beam it extends."""
        rows = torch.arange(parents.shape[0], device=parents.device)[:, None]
        return StepCache([k[rows, parents] for k in self.keys], [v[rows, parents] for v in self.values])


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xf = x.float()
        xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * xf.to(x.dtype)


def rotary(positions: torch.Tensor, head_dim: int, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """cos/sin tables (..., hd) for integer positions (...), Llama's half-split layout."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, device=positions.device).float() / head_dim))
    freqs = positions[..., None].float() * inv_freq
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos(), emb.sin()


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
    return x * cos + rotated * sin


class Attention(nn.Module):
    def __init__(self, cfg: PolicyConfig):
        super().__init__()
        d = cfg.d_model
        self.n_head, self.head_dim, self.dropout = cfg.n_head, cfg.head_dim, cfg.dropout
        self.q_proj = nn.Linear(d, d, bias=False)
        self.k_proj = nn.Linear(d, d, bias=False)
        self.v_proj = nn.Linear(d, d, bias=False)
        self.o_proj = nn.Linear(d, d, bias=False)

    def qkv(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor):
        """x (..., T, d) -> q, k, v (..., nh, T, hd) with rotary applied to q and k."""
        shape = x.shape[:-1] + (self.n_head, self.head_dim)
        q, k, v = (p(x).view(shape).transpose(-3, -2) for p in (self.q_proj, self.k_proj, self.v_proj))
        cos, sin = cos.unsqueeze(-3), sin.unsqueeze(-3)  # broadcast over heads
        return apply_rotary(q, cos, sin), apply_rotary(k, cos, sin), v

    def forward(self, x, cos, sin, mask=None):
        """Full-sequence attention, x (B, T, d). ``mask`` (B, 1, T, T) bool or None (causal)."""
        q, k, v = self.qkv(x, cos, sin)  # (B, nh, T, hd)
        p = self.dropout if self.training else 0.0
        if mask is None:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=p)
        else:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)
        y = y.transpose(1, 2).reshape(x.shape)
        return self.o_proj(y), k, v

    def decode(self, x, cos, sin, prefix_k, prefix_v, prefix_valid, step_k, step_v):
        """One new token per beam. x (B, W, d); prefix_k/v (B, nh, T, hd); step_k/v (B, W, nh, S, hd)."""
        B, W, _ = x.shape
        q, k, v = self.qkv(x.unsqueeze(2), cos.unsqueeze(2), sin.unsqueeze(2))  # (B, W, nh, 1, hd)
        step_k = k if step_k is None else torch.cat((step_k, k), dim=3)
        step_v = v if step_v is None else torch.cat((step_v, v), dim=3)
        q = q.squeeze(3) / math.sqrt(self.head_dim)  # (B, W, nh, hd)
        s_prefix = torch.einsum("bwhd,bhtd->bwht", q, prefix_k)
        s_prefix = s_prefix.masked_fill(~prefix_valid[:, None, None, :], float("-inf"))
        s_steps = torch.einsum("bwhd,bwhsd->bwhs", q, step_k)
        att = torch.cat((s_prefix, s_steps), dim=-1).softmax(dim=-1)
        T = prefix_k.shape[2]
        y = torch.einsum("bwht,bhtd->bwhd", att[..., :T], prefix_v)
        y = y + torch.einsum("bwhs,bwhsd->bwhd", att[..., T:], step_v)
        return self.o_proj(y.reshape(B, W, -1)), step_k, step_v


class MLP(nn.Module):
    def __init__(self, cfg: PolicyConfig):
        super().__init__()
        self.gate_proj = nn.Linear(cfg.d_model, cfg.d_ff, bias=False)
        self.up_proj = nn.Linear(cfg.d_model, cfg.d_ff, bias=False)
        self.down_proj = nn.Linear(cfg.d_ff, cfg.d_model, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class DecoderLayer(nn.Module):
    def __init__(self, cfg: PolicyConfig):
        super().__init__()
        self.self_attn = Attention(cfg)
        self.mlp = MLP(cfg)
        self.input_layernorm = RMSNorm(cfg.d_model, cfg.rms_eps)
        self.post_attention_layernorm = RMSNorm(cfg.d_model, cfg.rms_eps)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x, cos, sin, mask=None):
        h, k, v = self.self_attn(self.input_layernorm(x), cos, sin, mask)
        x = x + self.drop(h)
        return x + self.drop(self.mlp(self.post_attention_layernorm(x))), k, v


class LlamaBody(nn.Module):
    """Named ``model`` inside the policy, as in ``LlamaForCausalLM``."""

    def __init__(self, cfg: PolicyConfig):
        super().__init__()
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.layers = nn.ModuleList(DecoderLayer(cfg) for _ in range(cfg.n_layer))
        self.norm = RMSNorm(cfg.d_model, cfg.rms_eps)


class SidPolicy(nn.Module):
    def __init__(self, cfg: PolicyConfig):
        super().__init__()
        self.config = cfg
        self.model = LlamaBody(cfg)
        self.lm_head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear | nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def _rotary(self, positions: torch.Tensor):
        return rotary(positions, self.config.head_dim, self.config.rope_theta)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        """idx (B, T) right-padded -> logits (B, T, V). Losses live in ``recast.losses``."""
        return self.lm_head(self.hidden(idx))

    def hidden(self, idx: torch.Tensor) -> torch.Tensor:
        """idx (B, T) right-padded -> final normed hidden states (B, T, d_model), so a
        caller that needs logits at a few positions applies ``lm_head`` to those only."""
        T = idx.shape[1]
        if T > self.config.max_positions:
            raise ValueError(f"sequence of {T} tokens exceeds max_positions={self.config.max_positions}")
        cos, sin = self._rotary(torch.arange(T, device=idx.device))
        x = self.model.embed_tokens(idx)
        for layer in self.model.layers:
            x, _, _ = layer(x, cos, sin)
        return self.model.norm(x)

    def prefill(self, idx: torch.Tensor, valid: torch.Tensor) -> tuple[torch.Tensor, PrefixCache]:
        """idx, valid (B, T), left-padded. Returns next-token logits (B, V) and the cache."""
        B, T = idx.shape
        if T > self.config.max_positions:
            raise ValueError(f"prompt of {T} tokens exceeds max_positions={self.config.max_positions}")
        positions = (valid.long().cumsum(-1) - 1).clamp(min=0)  # each prompt starts at position 0
        cos, sin = self._rotary(positions)
        causal = torch.ones(T, T, dtype=torch.bool, device=idx.device).tril()
        # A padding query sees only itself: keeps softmax finite; its output is never used.
        eye = torch.eye(T, dtype=torch.bool, device=idx.device)
        mask = (causal & valid[:, None, :]) | eye
        x = self.model.embed_tokens(idx)
        keys, values = [], []
        for layer in self.model.layers:
            x, k, v = layer(x, cos, sin, mask[:, None])
            keys.append(k)
            values.append(v)
        logits = self.lm_head(self.model.norm(x[:, -1]))
        return logits, PrefixCache(keys, values, valid, valid.sum(-1))

    def decode(self, tokens: torch.Tensor, prefix: PrefixCache, steps: StepCache | None):
        """tokens (B, W) at position prompt length + decoded so far. Returns logits (B, W, V), cache."""
        done = 0 if steps is None else steps.keys[0].shape[3]
        positions = (prefix.lengths + done)[:, None].expand_as(tokens)
        cos, sin = self._rotary(positions)
        x = self.model.embed_tokens(tokens)
        keys, values = [], []
        for i, layer in enumerate(self.model.layers):
            sk = None if steps is None else steps.keys[i]
            sv = None if steps is None else steps.values[i]
            h, sk, sv = layer.self_attn.decode(
                layer.input_layernorm(x), cos, sin, prefix.keys[i], prefix.values[i], prefix.valid, sk, sv
            )
            x = x + h
            x = x + layer.mlp(layer.post_attention_layernorm(x))
            keys.append(sk)
            values.append(sv)
        return self.lm_head(self.model.norm(x)), StepCache(keys, values)
