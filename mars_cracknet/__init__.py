"""Mars-CrackNet: crack segmentation of Mars intermediate-sized cracks (PyTorch). See README.md."""
