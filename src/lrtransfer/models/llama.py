"""Llama-style decoder LM, the paper's main testbed scaled down (Appendix G.3).

Follows Lingua / Meta llama naming, so parameter names read like the paper's
``layers.13.feed_forward.w1``:

- ``tok_embeddings``: input embedding, init N(0, embed_init_std²) (default 1/√width, Lingua's);
- ``layers.{i}.attention_norm`` / ``ffn_norm``: pre-norm RMSNorm with learnable gains;
- ``layers.{i}.attention.{wq,wk,wv,wo}``: causal self-attention with RoPE and a FIXED head
  dimension, so ``n_heads = width / head_dim`` grows with width (as in the paper);
- ``layers.{i}.feed_forward.{w1,w2,w3}``: SwiGLU ``w2(silu(w1 x) * w3 x)`` with hidden size
  exactly ``3 * width``, so every hidden matrix scales by exactly the width multiplier m;
- ``norm``, ``output``: final RMSNorm and an untied readout.

All linear layers have no bias and are initialised N(0, 1/fan_in) (standard parameterisation;
muP enters only through per-layer learning rates, Everett et al., Appendix G.2).
The forward is plain matmuls + ``F.scaled_dot_product_attention`` so it is fast on CPU.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from torch import nn

from lrtransfer.models.base import FamilyConfig
from lrtransfer.models.mlp import init_linear_


class LlamaConfig(FamilyConfig):
    """Shape of a llama-style decoder; `width` is d_model (the paper's d_emb)."""

    family: Literal["llama"] = Field("llama", description="Model family discriminator.")
    width: int = Field(32, gt=0, description="Model width d_model; must be a multiple of head_dim.")
    base_width: int = Field(32, gt=0, description="d_model of the 1x proxy that defines muP base shapes.")
    depth: int = Field(4, gt=0, description="Number of transformer blocks.")
    head_dim: int = Field(32, gt=0, description="Fixed head size (paper: 128, the 1x width); n_heads = width/head_dim.")
    vocab_size: int = Field(256, gt=0, description="Vocabulary size (256: byte level).")
    seq_len: int = Field(128, gt=0, description="Maximum context length (RoPE table size).")
    norm_eps: float = Field(1e-5, gt=0, description="RMSNorm epsilon.")
    rope_theta: float = Field(10000.0, gt=0, description="RoPE base frequency.")
    embed_init_std: float | None = Field(
        None, gt=0, description="Std of the token-embedding init; None means 1/sqrt(width) (Lingua)."
    )

    @model_validator(mode="after")
    def _check_heads(self) -> LlamaConfig:
        if self.head_dim % 2:
            raise ValueError(f"head_dim: must be even for RoPE, got {self.head_dim}")
        for name in ("width", "base_width"):
            value = getattr(self, name)
            if value % self.head_dim:
                raise ValueError(f"{name}: {value} is not divisible by head_dim={self.head_dim}")
        return self

    def build(self) -> nn.Module:
        return Llama(self)

    def check_data(self, data) -> None:
        if data.kind != "text":
            raise ValueError(f"data.kind: the llama model needs text data, got {data.kind!r}")
        if data.seq_len > self.seq_len:
            raise ValueError(f"data.seq_len: {data.seq_len} exceeds model.seq_len {self.seq_len}")
        if self.vocab_size < data.vocab_size:
            raise ValueError(f"model.vocab_size: {self.vocab_size} is smaller than the data's {data.vocab_size} "
                             "token ids (byte-level text)")

    @property
    def n_heads(self) -> int:
        """Number of attention heads at this width."""
        return self.width // self.head_dim

    @property
    def ffn_hidden(self) -> int:
        """SwiGLU hidden size: exactly 3x the model width (Appendix G.3)."""
        return 3 * self.width


def rope_tables(seq_len: int, head_dim: int, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Cos/sin tables ``[seq_len, head_dim]`` for rotate-half RoPE (frequencies repeated twice)."""
    inv_freq = 1.0 / theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)
    angles = torch.outer(torch.arange(seq_len, dtype=torch.float32), inv_freq)
    angles = torch.cat([angles, angles], dim=-1)
    return angles.cos(), angles.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate ``x [B, T, H, head_dim]`` (cos/sin ``[T, 1, head_dim]``) by position: x·cos + rotate_half(x)·sin."""
    x1, x2 = x.chunk(2, dim=-1)
    return x * cos + torch.cat([-x2, x1], dim=-1) * sin


class Attention(nn.Module):
    """Multi-head causal self-attention with a fixed head size (no loops over heads)."""

    def __init__(self, cfg: LlamaConfig):
        super().__init__()
        self.n_heads, self.head_dim = cfg.n_heads, cfg.head_dim
        self.wq = nn.Linear(cfg.width, cfg.width, bias=False)
        self.wk = nn.Linear(cfg.width, cfg.width, bias=False)
        self.wv = nn.Linear(cfg.width, cfg.width, bias=False)
        self.wo = nn.Linear(cfg.width, cfg.width, bias=False)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape
        return x.view(b, t, self.n_heads, self.head_dim)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        # RoPE on the contiguous [B, T, H, hd] layout (cos/sin are [T, 1, hd]); SDPA wants [B, H, T, hd].
        q = apply_rope(self._heads(self.wq(x)), cos, sin).transpose(1, 2)
        k = apply_rope(self._heads(self.wk(x)), cos, sin).transpose(1, 2)
        v = self._heads(self.wv(x)).transpose(1, 2)
        out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.wo(out.transpose(1, 2).reshape(x.shape))


class FeedForward(nn.Module):
    """SwiGLU MLP: ``w2(silu(w1 x) * w3 x)``, hidden size 3x width."""

    def __init__(self, cfg: LlamaConfig):
        super().__init__()
        self.w1 = nn.Linear(cfg.width, cfg.ffn_hidden, bias=False)
        self.w2 = nn.Linear(cfg.ffn_hidden, cfg.width, bias=False)
        self.w3 = nn.Linear(cfg.width, cfg.ffn_hidden, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


class TransformerBlock(nn.Module):
    """Pre-norm block: x + attn(norm(x)), then + ffn(norm(x))."""

    def __init__(self, cfg: LlamaConfig):
        super().__init__()
        self.attention_norm = nn.RMSNorm(cfg.width, eps=cfg.norm_eps)
        self.attention = Attention(cfg)
        self.ffn_norm = nn.RMSNorm(cfg.width, eps=cfg.norm_eps)
        self.feed_forward = FeedForward(cfg)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        x = x + self.attention(self.attention_norm(x), cos, sin)
        return x + self.feed_forward(self.ffn_norm(x))


class Llama(nn.Module):
    """Decoder-only LM: ``model(tokens [B, T]) -> logits [B, T, vocab_size]``."""

    def __init__(self, cfg: LlamaConfig):
        super().__init__()
        self.cfg = cfg
        self.tok_embeddings = nn.Embedding(cfg.vocab_size, cfg.width)
        self.layers = nn.ModuleList(TransformerBlock(cfg) for _ in range(cfg.depth))
        self.norm = nn.RMSNorm(cfg.width, eps=cfg.norm_eps)
        self.output = nn.Linear(cfg.width, cfg.vocab_size, bias=False)
        cos, sin = rope_tables(cfg.seq_len, cfg.head_dim, cfg.rope_theta)
        # Non-persistent: derived from the config, so they stay out of checkpoints.
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Linear N(0, 1/fan_in), embedding N(0, embed_init_std²), RMSNorm gains 1."""
        std = self.cfg.embed_init_std
        std = 1.0 / math.sqrt(self.cfg.width) if std is None else std
        nn.init.normal_(self.tok_embeddings.weight, mean=0.0, std=std)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                init_linear_(module)
            elif isinstance(module, nn.RMSNorm):
                module.reset_parameters()

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Next-token logits for every position of ``tokens [B, T]`` (T <= seq_len)."""
        t = tokens.shape[1]
        if t > self.cfg.seq_len:
            raise ValueError(f"tokens: sequence length {t} exceeds seq_len={self.cfg.seq_len}")
        cos, sin = self.rope_cos[:t, None], self.rope_sin[:t, None]
        x = self.tok_embeddings(tokens)
        for layer in self.layers:
            x = layer(x, cos, sin)
        return self.output(self.norm(x))
