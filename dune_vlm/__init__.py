"""Mars-analog dune segmentation with a vision-language model (PyTorch). See README.md."""
