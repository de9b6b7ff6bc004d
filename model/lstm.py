"""The LSTM profile model: one module for training, offline evaluation and the streaming step.

Per event the LSTM reads [item vector, event-type embedding, value feature, log time-gap
feature]; its hidden state maps to a user vector in item space; score(item) = user · item
+ bias(item). Item vectors fuse a learned ID embedding with a projection of the item's
pretrained text features (sum; the ID part starts at zero so an item never seen in training
keeps a pure text vector: cold start).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from .events import EVENT_TYPES

__all__ = ["ModelConfig", "ProfileLSTM", "value_feature", "gap_feature", "TYPE_INDEX"]

TYPE_INDEX: dict[str, int] = {t: i for i, t in enumerate(EVENT_TYPES)}
_RATE = TYPE_INDEX["rate"]


class ModelConfigError(ValueError):
    """A model configuration that cannot be built."""


@dataclass(frozen=True)
class ModelConfig:
    """The model's shape; stored in the artifact beside the weights, the model is rebuilt from it."""

    n_items: int
    n_cats: int
    text_dim: int  # width of the (PCA- or autoencoder-reduced) text features; 0 = none
    item_dim: int = 64
    hidden: int = 128
    type_dim: int = 8
    n_types: int = len(EVENT_TYPES)
    use_id: bool = True
    use_text: bool = True
    item_bias: bool = True
    dropout: float = 0.2  # training only; the step never applies it
    # dropout on the LSTM's input alone (training only); None = `dropout`, on input and output alike
    input_dropout: float | None = None
    # a second learned ID embedding on the LSTM's input side only (zero at the start): the input
    # item vector is then the output item vector plus it, so what an item means as evidence about
    # the user can differ from what scores it as the next item; False = one vector for both (tied)
    input_id: bool = False
    recent_len: int = 256  # events kept per user for masking, reasons and re-warming
    tag_half_life_days: float = 30.0
    text_reducer: Literal["pca", "autoencoder", "none"] = "pca"

    def __post_init__(self) -> None:
        if self.n_items <= 0:
            raise ModelConfigError("n_items must be positive")
        if not (self.use_id or self.use_text):
            raise ModelConfigError("at least one of use_id / use_text must be on: items need a vector")
        if self.use_text and self.text_dim <= 0:
            raise ModelConfigError("use_text needs text_dim > 0 (text features of the catalogue)")
        if not 0.0 <= self.dropout < 1.0:
            raise ModelConfigError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.input_dropout is not None and not 0.0 <= self.input_dropout < 1.0:
            raise ModelConfigError(f"input_dropout must be in [0, 1), got {self.input_dropout}")
        if self.recent_len < 1:
            raise ModelConfigError("recent_len must be >= 1")

    @property
    def input_dim(self) -> int:
        return self.item_dim + self.type_dim + 2

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ModelConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ModelConfigError(f"artifact config has unknown fields {sorted(unknown)}: written by a newer profilestream?")
        return cls(**d)


def value_feature(types: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Normalised value: ratings centred on 3 (1..5 → -1..1); dwell/quantity log-scaled; NaN → 0."""
    types = np.asarray(types)
    values = np.asarray(values, dtype=np.float64)
    missing = np.isnan(values)
    v = np.where(missing, 0.0, values)
    out = np.where(types == _RATE, (v - 3.0) / 2.0, np.log1p(np.maximum(v, 0.0)) / 4.0)
    return np.where(missing, 0.0, out).astype(np.float32)


def gap_feature(gaps_s: np.ndarray) -> np.ndarray:
    """log(1 + seconds since the user's previous event) / 10; 0 for the first event."""
    return (np.log1p(np.maximum(np.asarray(gaps_s, dtype=np.float64), 0.0)) / 10.0).astype(np.float32)


class ProfileLSTM(nn.Module):
    def __init__(self, cfg: ModelConfig, text_features: np.ndarray | None) -> None:
        super().__init__()
        self.cfg = cfg
        if cfg.use_text:
            if text_features is None or text_features.shape != (cfg.n_items, cfg.text_dim):
                got = None if text_features is None else text_features.shape
                raise ModelConfigError(f"text features must be ({cfg.n_items}, {cfg.text_dim}), got {got}")
            self.register_buffer("text", torch.as_tensor(text_features, dtype=torch.float32))
            self.text_proj = nn.Linear(cfg.text_dim, cfg.item_dim, bias=False)
        if cfg.use_id:
            self.id_emb = nn.Embedding(cfg.n_items, cfg.item_dim)
            # ID part starts at zero when text is on: untrained (cold) items stay pure text.
            if cfg.use_text:
                nn.init.zeros_(self.id_emb.weight)
            else:
                nn.init.normal_(self.id_emb.weight, std=1.0 / math.sqrt(cfg.item_dim))
        if cfg.input_id:
            # zero at the start, so an item never seen in training keeps its output vector as input
            self.in_id_emb = nn.Embedding(cfg.n_items, cfg.item_dim)
            nn.init.zeros_(self.in_id_emb.weight)
        self.bias = nn.Parameter(torch.zeros(cfg.n_items), requires_grad=cfg.item_bias)
        self.type_emb = nn.Embedding(cfg.n_types, cfg.type_dim)
        self.drop = nn.Dropout(cfg.dropout)  # on the LSTM's output
        self.drop_in = nn.Dropout(cfg.dropout if cfg.input_dropout is None else cfg.input_dropout)
        # nn.LSTM's gate order (i, f, g, o) and equations are what model.runtime's step uses.
        self.lstm = nn.LSTM(cfg.input_dim, cfg.hidden, batch_first=True)
        self.out = nn.Linear(cfg.hidden, cfg.item_dim)

    def item_vectors(self) -> torch.Tensor:
        v = torch.zeros(self.cfg.n_items, self.cfg.item_dim, device=self.bias.device)  # (N, D)
        if self.cfg.use_text:
            v = v + self.text_proj(self.text)
        if self.cfg.use_id:
            v = v + self.id_emb.weight
        return v

    def input_vectors(self, item_vecs: torch.Tensor) -> torch.Tensor:
        """The item vectors the LSTM reads: the output item vectors, plus the input-side ID
        embedding when `input_id` is on."""
        return item_vecs + self.in_id_emb.weight if self.cfg.input_id else item_vecs

    def inputs(self, items: torch.Tensor, types: torch.Tensor, vals: torch.Tensor, gaps: torch.Tensor,
               item_vecs: torch.Tensor) -> torch.Tensor:
        """(B, L) index/feature tensors → (B, L, input_dim) LSTM inputs."""
        return torch.cat(
            [item_vecs[items], self.type_emb(types), vals.unsqueeze(-1), gaps.unsqueeze(-1)], dim=-1
        )

    def forward(self, items: torch.Tensor, types: torch.Tensor, vals: torch.Tensor, gaps: torch.Tensor,
                lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Full-sequence pass. Returns user vectors (B, L, D) after each event and item vectors (N, D)."""
        item_vecs = self.item_vectors()
        x = self.drop_in(self.inputs(items, types, vals, gaps, self.input_vectors(item_vecs)))  # (B, L, In)
        # No packing: sequences are right-padded and the LSTM is causal, so outputs before each
        # sequence's end never see its padding (callers ignore the padded positions). A dense
        # input also lets PyTorch use its oneDNN LSTM on CPU: ≈ 5× faster forward + backward
        # than the packed path at batch 32 (`lengths` is kept in the signature for callers).
        h, _ = self.lstm(x)  # (B, L, H)
        return self.out(self.drop(h)), item_vecs

    def score(self, user_vecs: torch.Tensor, item_vecs: torch.Tensor) -> torch.Tensor:
        return user_vecs @ item_vecs.T + self.bias  # (..., N)
