"""Losses, learning-rate schedule, metrics, EMA and configuration helpers."""
