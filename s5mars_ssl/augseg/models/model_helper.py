"""The full segmentation network, the original (AugSeg/S5Mars) key layout beside it
(:func:`checkpoint_filter_fn`), and loading of an ImageNet ResNet-50 into its encoder."""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from s5mars_ssl.augseg.models.decoder import DeepLabV3PlusDecoder
from s5mars_ssl.augseg.models.resnet import ResNet50c, encoder_filter_fn, original_encoder_key
from shared.torch_checkpoint import CheckpointError, is_state_dict, load_strict, load_torch_file


class DeepLabV3Plus(nn.Module):
    """DeepLabv3+ / ResNet-50c, output stride 16; logits at the input resolution.

    With ``num_classes=9`` it has exactly 40,472,921 parameters (encoder 23,631,808, decoder
    16,841,113). ``sync_bn=True`` builds it with ``nn.SyncBatchNorm`` (multi-GPU CUDA only).
    """

    def __init__(self, num_classes: int = 9, sync_bn: bool = False, multi_grid: bool = True):
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be positive, got {num_classes}")
        norm = nn.SyncBatchNorm if sync_bn else nn.BatchNorm2d
        self.num_classes = num_classes
        self.encoder = ResNet50c(multi_grid=multi_grid, norm_layer=norm)
        self.decoder = DeepLabV3PlusDecoder(num_classes, norm=norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c1, c4 = self.encoder(x)
        logits = self.decoder(c1, c4)
        return F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=True)


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# the one checkpoint error (shared.torch_checkpoint, a shared.errors.UserError); the old name stays
PretrainedLoadError = CheckpointError


# --------------------------------------------------------------------------- original layout
# The original's decoder: ASPP branches ``conv1`` (pooling) .. ``conv5``, ours ``pool``, ``conv1``,
# ``atrous.0-2``; its classifier is one Sequential, ours three blocks, and its first 3x3 conv
# takes (low-level 48, ASPP 256) input channels in that order, ours (ASPP 256, low-level 48).
_ASPP = {"conv1.1.": "pool.1.0.", "conv1.2.": "pool.1.1.", "conv2.": "conv1.",
         "conv3.": "atrous.0.", "conv4.": "atrous.1.", "conv5.": "atrous.2."}
_CLS = {"0.": "0.0.", "1.": "0.1.", "3.": "1.0.", "4.": "1.1.", "6.": "2."}
LOW_LEVEL = 48


def original_key(key: str) -> str:
    """An original model key (``module.`` stripped) -> ours (unknown keys come back as is)."""
    if key.startswith("encoder."):
        return "encoder." + original_encoder_key(key[len("encoder."):])
    for prefix, table in (("decoder.aspp.", _ASPP), ("decoder.classifier.", _CLS)):
        if key.startswith(prefix):
            rest = key[len(prefix):]
            for old, new in table.items():
                if rest.startswith(old):
                    return prefix + new + rest[len(old):]
    return key


def checkpoint_filter_fn(state: dict[str, torch.Tensor], path=None
                         ) -> dict[str, torch.Tensor]:
    """The original's model state dict -> ours (timm's ``checkpoint_filter_fn`` pattern): keys
    renamed, the classifier's first conv with its input channels permuted. Two tensors onto
    one key is a ``CheckpointError`` naming ``path``; the caller checks the result strictly."""
    out = {}
    for k, v in state.items():
        new = original_key(k.removeprefix("module."))
        if new in out:
            raise CheckpointError(f"{path}: two tensors map to {new!r}")
        out[new] = v
    w = out.get("decoder.classifier.0.0.weight")
    if torch.is_tensor(w) and w.dim() == 4 and w.shape[1] > LOW_LEVEL:
        out["decoder.classifier.0.0.weight"] = torch.cat([w[:, LOW_LEVEL:], w[:, :LOW_LEVEL]], 1)
    return out


def load_pretrained_encoder(model: DeepLabV3Plus, path: str | os.PathLike,
                            verbose: bool = True) -> int:
    """Load an ImageNet ResNet-50c state dict into ``model.encoder``, strictly.

    Accepts the AugSeg ``pretrain/resnet50.pth`` layout (deep stem ``conv1.{0,1,3,4,6}`` +
    ``bn1``, mapped onto ours), our own encoder names, a plain state dict or one wrapped under
    ``state_dict``/``model`` (``.pth`` read weights-only, or ``.safetensors``); a
    ``module.``/``encoder.``/``backbone.`` prefix is stripped and the classifier (``fc.*``)
    ignored (``resnet.encoder_filter_fn``). Every one of the encoder's tensors must be placed
    with its shape, else a ``CheckpointError`` names the missing / unexpected / mis-shaped
    keys. Returns the number of tensors loaded.
    """
    path = Path(path)
    obj = load_torch_file(path, what="pretrained encoder file")
    if isinstance(obj, dict):
        for key in ("state_dict", "model"):
            if key in obj and isinstance(obj[key], dict):
                obj = obj[key]
    if not is_state_dict(obj):
        raise CheckpointError(f"{path}: not a state dict (expected a mapping of parameter "
                              "names to tensors)")
    load_strict(model.encoder, encoder_filter_fn(obj), path, what="ResNet-50c encoder")
    n = len(model.encoder.state_dict())
    if verbose:
        print(f"pretrained encoder {path}: loaded {n}/{n} tensors")
    return n
