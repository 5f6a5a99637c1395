"""The paper's model: Mix Transformer + text-visual cross-attention at stage 4 + SegFormer head.

Visual tokens of the deepest stage ask the ten class descriptions (sentence embeddings of expert
text) which morphology they look like: queries come from the image, keys and values from the text,
and the attended text is added back to the tokens. With 10 classes and 512-d text embeddings the
model has 22,021,834 parameters.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from dune_vlm.models.segformer import (
    TORCH_LN_EPS,
    MixVisionTransformer,
    SegFormerBaseline,
    block_key,
    check_input,
    init_weights,
)


class TextVisualAlignment(nn.Module):
    """Cross-attention from visual tokens (queries) to class text embeddings (keys, values)."""

    def __init__(self, visual_dim: int = 512, text_dim: int = 512, num_heads: int = 8,
                 dropout: float = 0.1):
        super().__init__()
        if visual_dim % num_heads:
            raise ValueError(f"visual_dim {visual_dim} not divisible by num_heads {num_heads}")
        self.text_dim = text_dim
        self.num_heads = num_heads
        self.scale = (visual_dim // num_heads) ** -0.5
        self.q_proj = nn.Linear(visual_dim, visual_dim)
        self.k_proj = nn.Linear(text_dim, visual_dim)
        self.v_proj = nn.Linear(text_dim, visual_dim)
        self.attn_drop = nn.Dropout(dropout)
        self.out_proj = nn.Linear(visual_dim, visual_dim)
        self.norm = nn.LayerNorm(visual_dim, eps=TORCH_LN_EPS)  # the reference's default eps

    def forward(self, tokens: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        """tokens (B, N, Cv); text (B, K, D) -> (B, N, Cv)."""
        b, n, c = tokens.shape
        k_cls = text.shape[1]
        heads = self.num_heads
        q = self.q_proj(tokens).reshape(b, n, heads, -1).transpose(1, 2)
        k = self.k_proj(text).reshape(b, k_cls, heads, -1).transpose(1, 2)
        v = self.v_proj(text).reshape(b, k_cls, heads, -1).transpose(1, 2)
        attn = (q @ k.transpose(-2, -1)) * self.scale  # (B, heads, N, K): softmax over classes
        attn = self.attn_drop(attn.softmax(dim=-1))
        out = (attn @ v).transpose(1, 2).reshape(b, n, c)
        return self.norm(tokens + self.out_proj(out))


class SegFormerHead(nn.Module):
    """Per-stage 1x1 conv to ``dim``, upsample to stride 4, concat, 1x1 conv+BN+ReLU, classify."""

    def __init__(self, in_dims: Sequence[int], num_classes: int, dim: int = 256,
                 dropout: float = 0.1):
        super().__init__()
        self.proj = nn.ModuleList(nn.Conv2d(d, dim, 1, bias=True) for d in in_dims)
        self.fuse = nn.Sequential(
            nn.Conv2d(dim * len(in_dims), dim, 1, bias=False),
            nn.BatchNorm2d(dim),
            nn.ReLU(inplace=True),
        )
        self.dropout = nn.Dropout(dropout)  # element-wise, as the reference
        self.classifier = nn.Conv2d(dim, num_classes, 1)

    def forward(self, feats: Sequence[torch.Tensor]) -> torch.Tensor:
        size = feats[0].shape[2:]
        outs = []
        for f, proj in zip(feats, self.proj):
            y = proj(f)
            if y.shape[2:] != size:
                y = F.interpolate(y, size=size, mode="bilinear", align_corners=False)
            outs.append(y)
        y = self.fuse(torch.cat(outs, dim=1))
        return self.classifier(self.dropout(y))


class DuneFusionSegFormer(nn.Module):
    """Vision-language dune segmenter: ``forward(x, text_embeds)``.

    ``x``: (B, in_chans, H, W) with H, W multiples of 32. ``text_embeds``: (C, D) shared by the
    batch or (B, C, D), C = ``num_classes`` and D = ``text_dim``. Returns logits (B, C, H, W).
    """

    uses_text = True

    def __init__(
        self,
        in_chans: int = 64,
        num_classes: int = 10,
        text_dim: int = 512,
        embed_dims: Sequence[int] = (64, 128, 256, 512),
        num_heads: Sequence[int] = (1, 2, 4, 8),
        depths: Sequence[int] = (3, 4, 6, 3),
        sr_ratios: Sequence[int] = (8, 4, 2, 1),
        mlp_ratio: float = 4.0,
        text_heads: int = 8,
        decoder_dim: int = 256,
        dropout: float = 0.1,
    ):
        super().__init__()
        self.in_chans = in_chans
        self.num_classes = num_classes
        self.text_dim = text_dim
        self.encoder = MixVisionTransformer(in_chans, embed_dims, num_heads, mlp_ratio, depths,
                                            sr_ratios)
        self.align = TextVisualAlignment(embed_dims[-1], text_dim, text_heads, dropout)
        self.head = SegFormerHead(embed_dims, num_classes, decoder_dim, dropout)
        self.apply(init_weights)

    def check_text(self, text_embeds: torch.Tensor | None, batch: int) -> torch.Tensor:
        if text_embeds is None:
            raise ValueError("the fusion model needs text embeddings of shape "
                             f"({self.num_classes}, {self.text_dim})")
        if not torch.is_tensor(text_embeds):
            text_embeds = torch.as_tensor(text_embeds)
        if text_embeds.ndim == 2:
            text_embeds = text_embeds.unsqueeze(0).expand(batch, -1, -1)
        if text_embeds.ndim != 3:
            raise ValueError("text embeddings must have shape (C, D) or (B, C, D), got "
                             f"{tuple(text_embeds.shape)}")
        b, c, d = text_embeds.shape
        if c != self.num_classes:
            raise ValueError(f"text embeddings have {c} rows but the model has "
                             f"{self.num_classes} classes")
        if d != self.text_dim:
            raise ValueError(f"text embeddings are {d}-dimensional but the model expects "
                             f"text_dim={self.text_dim}")
        if b != batch:
            raise ValueError(f"text embeddings batch {b} does not match image batch {batch}")
        return text_embeds

    def forward(self, x: torch.Tensor, text_embeds: torch.Tensor | None = None) -> torch.Tensor:
        check_input(x, self.in_chans)
        text = self.check_text(text_embeds, x.shape[0])
        text = text.to(device=x.device, dtype=x.dtype if x.is_floating_point() else torch.float32)

        def hook(tokens, h, w):
            return self.align(tokens, text.to(tokens.dtype))

        feats = self.encoder(x, stage_hook=hook)
        logits = self.head(feats)
        return F.interpolate(logits, size=x.shape[2:], mode="bilinear", align_corners=False)


def build_fusion_model(num_classes: int = 10, text_dim: int = 512, in_chans: int = 64,
                       **kwargs) -> DuneFusionSegFormer:
    """The paper's fusion model (22,021,834 parameters at 10 classes, text_dim 512)."""
    return DuneFusionSegFormer(in_chans=in_chans, num_classes=num_classes, text_dim=text_dim,
                               **kwargs)


MODEL_NAMES = ("fusion", "baseline")


def build_model(name: str, num_classes: int = 10, text_dim: int = 512, in_chans: int = 64,
                **kwargs) -> nn.Module:
    """``fusion`` (SegFormer + Embed + Text) or ``baseline`` (Embed-only SegFormer)."""
    if name == "fusion":
        return build_fusion_model(num_classes, text_dim, in_chans, **kwargs)
    if name == "baseline":
        return SegFormerBaseline(in_chans=in_chans, num_classes=num_classes, **kwargs)
    raise ValueError(f"unknown model {name!r}; expected one of {MODEL_NAMES}")


# --------------------------------------------------------------------------- original layout
_FUSION_PREFIXES = (("patch_embeds.", "encoder.patch_embeds."), ("norms.", "encoder.norms."),
                    ("alignment_module.vis_proj_q.", "align.q_proj."),
                    ("alignment_module.text_proj_k.", "align.k_proj."),
                    ("alignment_module.text_proj_v.", "align.v_proj."),
                    ("alignment_module.out_proj.", "align.out_proj."),
                    ("alignment_module.norm.", "align.norm."),
                    ("decode_head.linear_fuse.", "head.fuse.0."),
                    ("decode_head.batch_norm.", "head.fuse.1."),
                    ("decode_head.linear_pred.", "head.classifier."))


def original_key(key: str) -> str:
    """A key of the reference fusion model (``patch_embeds.*``, ``blocks.*``,
    ``alignment_module.*``, ``decode_head.*``; ``module.`` stripped) -> ours (unknown prefixes
    stay, and fail the strict check)."""
    m = re.fullmatch(r"blocks\.(\d+)\.(\d+)\.(.+)", key)
    if m:
        return f"encoder.stages.{m[1]}.{m[2]}.{block_key(m[3])}"
    for ref, ours in _FUSION_PREFIXES:
        if key.startswith(ref):
            return ours + key[len(ref):]
    m = re.fullmatch(r"decode_head\.linear_layers\.(\d+)\.linear\.(.+)", key)
    if m:
        return f"head.proj.{m[1]}.{m[2]}"
    return key


def checkpoint_filter_fn(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The reference fusion model's state dict -> :class:`DuneFusionSegFormer` keys (timm's
    ``checkpoint_filter_fn`` pattern; the caller checks the result strictly)."""
    return {original_key(k.removeprefix("module.")): v for k, v in state.items()}
