"""Dataset, metrics and configuration helpers."""
