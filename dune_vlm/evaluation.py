"""Evaluation: batches of tiles through the model into confusion-matrix metrics."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from dune_vlm.utils.metrics import SegMetric


def collate(batch):
    imgs = torch.from_numpy(np.stack([b[0] for b in batch]))
    labels = torch.from_numpy(np.stack([b[1] for b in batch]))
    idx = torch.as_tensor([b[2] for b in batch])
    return imgs, labels, idx


@torch.no_grad()
def evaluate(model, dataset: Dataset, text, device, num_classes: int, batch_size: int = 8,
             workers: int = 0, regions: list[str] | None = None,
             precision: str | bool = "fp32", sampler=None, progress: bool = False
             ) -> dict[str, Any]:
    """Metrics over a dataset: overall, plus per region when ``regions`` (one per item) given;
    ``precision``: auto, fp32, bf16 or a resolved name (``shared.torch_runtime``).

    Returns ``{"overall": SegMetric, "regions": {name: SegMetric}}`` (call ``.compute()``).
    """
    from tqdm import tqdm

    from shared.torch_runtime import precision_for

    autocast = precision_for(precision, device).autocast
    model.eval()
    overall = SegMetric(num_classes)
    per_region: dict[str, SegMetric] = {}
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers,
                        collate_fn=collate, sampler=sampler)
    for imgs, labels, idx in tqdm(loader, desc="eval", unit="batch", disable=not progress,
                                  leave=False):
        imgs = imgs.to(device)
        with autocast():
            logits = model(imgs, text)
        pred = logits.argmax(1).cpu().numpy()
        lab = labels.numpy()
        overall.update(pred, lab)
        if regions is not None:
            for p, t, i in zip(pred, lab, idx.tolist()):
                per_region.setdefault(regions[i], SegMetric(num_classes)).update(p, t)
    return {"overall": overall, "regions": per_region}

