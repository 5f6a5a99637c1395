"""S5Mars: semi-supervised Mars terrain segmentation (PyTorch + segment-anything). See README.md."""
