"""S5Mars-layout datasets, geometric transforms and the Mars strong augmentations."""
