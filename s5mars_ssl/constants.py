"""S5Mars class names, raw-to-train id mapping and the colour palette used for predictions."""

from __future__ import annotations

import numpy as np

CLASSES = ("sky", "ridge", "soil", "sand", "bedrock", "rock", "rover", "trace", "hole")
NUM_CLASSES = len(CLASSES)
IGNORE_INDEX = 255
#: raw label ids on disk: 0 = NULL (unlabelled), 1..9 = the nine classes
RAW_IDS = tuple(range(NUM_CLASSES + 1))

#: one RGB colour per train id (0..8); ignore (255) is drawn black
PALETTE = np.array([
    [70, 130, 180],   # sky: steel blue
    [128, 64, 128],   # ridge: purple
    [210, 150, 75],   # soil: ochre
    [250, 220, 120],  # sand: pale yellow
    [140, 90, 60],    # bedrock: brown
    [200, 40, 40],    # rock: red
    [230, 230, 230],  # rover: light grey
    [60, 180, 75],    # trace: green
    [20, 20, 120],    # hole: dark blue
], dtype=np.uint8)


def raw_to_train(raw: np.ndarray) -> np.ndarray:
    """Map raw ids 1..9 to train ids 0..8 and raw 0 (NULL) to 255. Values > 9 raise ValueError."""
    raw = np.asarray(raw)
    if raw.size and (raw.min() < 0 or raw.max() > NUM_CLASSES):
        bad = sorted(int(v) for v in np.unique(raw) if not 0 <= v <= NUM_CLASSES)
        raise ValueError(f"label ids outside 0..{NUM_CLASSES}: {bad[:10]}")
    out = raw.astype(np.int64) - 1
    out[raw == 0] = IGNORE_INDEX
    return out.astype(np.uint8)


def train_to_raw(train: np.ndarray) -> np.ndarray:
    """Inverse of :func:`raw_to_train` (255 -> 0)."""
    train = np.asarray(train).astype(np.int64)
    out = train + 1
    out[train == IGNORE_INDEX] = 0
    return out.astype(np.uint8)


def colorize(mask: np.ndarray) -> np.ndarray:
    """(H, W) train ids -> (H, W, 3) uint8 colours (ignore and unknown ids black)."""
    mask = np.asarray(mask)
    out = np.zeros((*mask.shape, 3), dtype=np.uint8)
    valid = mask < NUM_CLASSES
    out[valid] = PALETTE[mask[valid]]
    return out
