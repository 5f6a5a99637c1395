"""Datasets (original layout), preprocessing and the synthetic crack-scene generator."""
