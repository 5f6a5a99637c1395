"""Mix Transformer (SegFormer MiT) encoder and the Embed-only SegFormer baseline.

The encoder follows SegFormer (Xie et al., 2021): overlapping patch embeddings, efficient
self-attention whose keys/values come from a spatially reduced token map, and Mix-FFN blocks with a
3x3 depth-wise convolution. It takes any number of input bands (64 for Google Satellite Embedding
rasters). Spatial sizes are handled for any input whose sides are multiples of 32.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

LN_EPS = 1e-6  # the reference fusion encoder's norm_layer (block norms, stage norms)
TORCH_LN_EPS = 1e-5  # PyTorch's default: the reference's patch-embed and attention-sr norms


def init_weights(module: nn.Module) -> None:
    """SegFormer initialisation: trunc-normal Linear, unit LayerNorm, He-style conv (fan-out)."""
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Conv2d):
        fan_out = module.kernel_size[0] * module.kernel_size[1] * module.out_channels
        fan_out //= module.groups
        nn.init.normal_(module.weight, 0.0, math.sqrt(2.0 / fan_out))
        if module.bias is not None:
            nn.init.zeros_(module.bias)


class OverlapPatchEmbed(nn.Module):
    """Strided convolution with overlapping windows, then LayerNorm over channels."""

    def __init__(self, in_chans: int, embed_dim: int, patch_size: int, stride: int):
        super().__init__()
        self.proj = nn.Conv2d(in_chans, embed_dim, patch_size, stride, padding=patch_size // 2)
        self.norm = nn.LayerNorm(embed_dim, eps=TORCH_LN_EPS)  # the reference's default eps

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, int, int]:
        x = self.proj(x)
        _, _, h, w = x.shape
        x = x.flatten(2).transpose(1, 2)
        return self.norm(x), h, w


class EfficientSelfAttention(nn.Module):
    """Multi-head self-attention with keys/values from a map reduced by ``sr_ratio``."""

    def __init__(self, dim: int, num_heads: int, sr_ratio: int, qkv_bias: bool = True):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.q = nn.Linear(dim, dim, bias=qkv_bias)
        self.kv = nn.Linear(dim, 2 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.sr_ratio = sr_ratio
        if sr_ratio > 1:
            self.sr = nn.Conv2d(dim, dim, kernel_size=sr_ratio, stride=sr_ratio)
            self.norm = nn.LayerNorm(dim, eps=TORCH_LN_EPS)  # the reference's default eps

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        b, n, c = x.shape
        heads = self.num_heads
        q = self.q(x).reshape(b, n, heads, c // heads).transpose(1, 2)
        if self.sr_ratio > 1:
            m = x.transpose(1, 2).reshape(b, c, h, w)
            m = self.sr(m).flatten(2).transpose(1, 2)
            m = self.norm(m)
        else:
            m = x
        kv = self.kv(m).reshape(b, -1, 2, heads, c // heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, kv[0], kv[1])  # scale = head_dim ** -0.5
        return self.proj(out.transpose(1, 2).reshape(b, n, c))


class MixFFN(nn.Module):
    """fc1 -> 3x3 depth-wise conv (positional information) -> GELU -> fc2."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.dwconv = nn.Conv2d(hidden, hidden, 3, 1, 1, groups=hidden, bias=True)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        x = self.fc1(x)
        b, n, c = x.shape
        x = self.dwconv(x.transpose(1, 2).reshape(b, c, h, w)).flatten(2).transpose(1, 2)
        return self.fc2(self.act(x))


class Block(nn.Module):
    """Pre-norm transformer block: x + Attn(LN(x)); x + MixFFN(LN(x))."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, sr_ratio: int,
                 ln_eps: float = LN_EPS):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=ln_eps)
        self.attn = EfficientSelfAttention(dim, num_heads, sr_ratio)
        self.norm2 = nn.LayerNorm(dim, eps=ln_eps)
        self.mlp = MixFFN(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), h, w)
        return x + self.mlp(self.norm2(x), h, w)


class MixVisionTransformer(nn.Module):
    """Four-stage hierarchical encoder; returns feature maps at strides 4, 8, 16 and 32.

    ``stage_norm=False`` drops the LayerNorm that closes each stage (the reference baseline has
    none). ``ln_eps`` is the eps of the block and stage norms (1e-6 in the reference fusion
    encoder, PyTorch's 1e-5 in the reference baseline); the patch-embedding and
    spatial-reduction norms always use PyTorch's 1e-5, as in the reference. ``stage_hook``
    (optional callable ``(tokens, h, w) -> tokens``) is applied to the
    tokens of the last stage after its closing LayerNorm; the fusion model uses it for text
    alignment.
    """

    def __init__(
        self,
        in_chans: int = 64,
        embed_dims: Sequence[int] = (64, 128, 256, 512),
        num_heads: Sequence[int] = (1, 2, 4, 8),
        mlp_ratio: float = 4.0,
        depths: Sequence[int] = (3, 4, 6, 3),
        sr_ratios: Sequence[int] = (8, 4, 2, 1),
        stage_norm: bool = True,
        ln_eps: float = LN_EPS,
    ):
        super().__init__()
        self.in_chans = in_chans
        self.embed_dims = list(embed_dims)
        self.patch_embeds = nn.ModuleList()
        self.stages = nn.ModuleList()
        self.norms = nn.ModuleList()
        prev = in_chans
        for i, dim in enumerate(embed_dims):
            k, s = (7, 4) if i == 0 else (3, 2)
            self.patch_embeds.append(OverlapPatchEmbed(prev, dim, k, s))
            self.stages.append(nn.ModuleList(
                Block(dim, num_heads[i], mlp_ratio, sr_ratios[i], ln_eps)
                for _ in range(depths[i])))
            self.norms.append(nn.LayerNorm(dim, eps=ln_eps) if stage_norm else nn.Identity())
            prev = dim

    def forward(self, x: torch.Tensor, stage_hook=None) -> list[torch.Tensor]:
        b = x.shape[0]
        feats = []
        last = len(self.stages) - 1
        for i, (embed, blocks, norm) in enumerate(zip(self.patch_embeds, self.stages, self.norms)):
            x, h, w = embed(x)
            for blk in blocks:
                x = blk(x, h, w)
            x = norm(x)
            if i == last and stage_hook is not None:
                x = stage_hook(x, h, w)
            x = x.transpose(1, 2).reshape(b, -1, h, w)
            feats.append(x)
        return feats


def check_input(x: torch.Tensor, in_chans: int) -> None:
    """Clear errors for an input the encoder cannot take."""
    if x.ndim != 4:
        raise ValueError(f"expected a (B, {in_chans}, H, W) tensor, got shape {tuple(x.shape)}")
    if x.shape[1] != in_chans:
        raise ValueError(f"expected {in_chans} input bands, got {x.shape[1]}")
    if x.shape[2] % 32 or x.shape[3] % 32:
        raise ValueError(f"height and width must be multiples of 32, got {tuple(x.shape[2:])}")


class SegFormerBaseline(nn.Module):
    """Embed-only SegFormer (MiT-B0-like encoder, all-MLP decoder); text is not used.

    As in the reference baseline, its stages are not closed by a LayerNorm and every LayerNorm
    has PyTorch's default eps 1e-5.

    ``forward(x, text_embeds=None)`` accepts and ignores text so that training and evaluation code
    treats both models alike. Parameter count with 64 bands and 10 classes: 3,811,082.
    """

    uses_text = False

    def __init__(
        self,
        in_chans: int = 64,
        num_classes: int = 10,
        embed_dims: Sequence[int] = (32, 64, 160, 256),
        num_heads: Sequence[int] = (1, 2, 5, 8),
        depths: Sequence[int] = (2, 2, 2, 2),
        sr_ratios: Sequence[int] = (8, 4, 2, 1),
        decoder_dim: int = 256,
        dropout: float = 0.1,
    ):
        super().__init__()
        self.in_chans = in_chans
        self.num_classes = num_classes
        self.encoder = MixVisionTransformer(in_chans, embed_dims, num_heads, 4.0, depths,
                                            sr_ratios, stage_norm=False, ln_eps=TORCH_LN_EPS)
        self.linear_c = nn.ModuleList(nn.Linear(d, decoder_dim) for d in embed_dims)
        self.linear_fuse = nn.Conv2d(decoder_dim * len(embed_dims), decoder_dim, 1, bias=True)
        self.dropout = nn.Dropout(dropout)
        self.linear_pred = nn.Conv2d(decoder_dim, num_classes, 1)
        self.apply(init_weights)

    def forward(self, x: torch.Tensor, text_embeds: torch.Tensor | None = None) -> torch.Tensor:
        check_input(x, self.in_chans)
        feats = self.encoder(x)
        size = feats[0].shape[2:]
        outs = []
        for f, lin in zip(feats, self.linear_c):
            b, c, h, w = f.shape
            y = lin(f.flatten(2).transpose(1, 2)).transpose(1, 2).reshape(b, -1, h, w)
            if y.shape[2:] != size:
                y = F.interpolate(y, size=size, mode="bilinear", align_corners=False)
            outs.append(y)
        y = self.linear_fuse(torch.cat(outs[::-1], dim=1))
        y = self.linear_pred(self.dropout(y))
        return F.interpolate(y, size=x.shape[2:], mode="bilinear", align_corners=False)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# --------------------------------------------------------------------------- original layout
# The reference's MiT blocks name the depth-wise conv ``mlp.dwconv.dwconv`` (ours ``mlp.dwconv``).
_BLOCK_RENAMES = (("mlp.dwconv.dwconv.", "mlp.dwconv."),)


def block_key(rest: str) -> str:
    """A key inside one reference MiT block -> ours."""
    for ref, ours in _BLOCK_RENAMES:
        rest = rest.replace(ref, ours)
    return rest


def original_key(key: str) -> str:
    """A key of the original SegFormer baseline (``patch_embed1``, ``block1``, ``linear_c1``...,
    ``module.`` stripped) -> ours (unknown keys stay, and fail the strict check)."""
    m = re.fullmatch(r"patch_embed(\d)\.(.+)", key)
    if m:
        return f"encoder.patch_embeds.{int(m[1]) - 1}.{m[2]}"
    m = re.fullmatch(r"block(\d)\.(\d+)\.(.+)", key)
    if m:
        return f"encoder.stages.{int(m[1]) - 1}.{m[2]}.{block_key(m[3])}"
    m = re.fullmatch(r"linear_c(\d)\.(.+)", key)
    if m:
        return f"linear_c.{int(m[1]) - 1}.{m[2]}"
    return key


def checkpoint_filter_fn(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The reference baseline's state dict -> :class:`SegFormerBaseline` keys (timm's
    ``checkpoint_filter_fn`` pattern; the caller checks the result strictly)."""
    return {original_key(k.removeprefix("module.")): v for k, v in state.items()}
