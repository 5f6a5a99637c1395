"""AugSeg-style building blocks of S5Mars: models, datasets, augmentations, losses, metrics."""
