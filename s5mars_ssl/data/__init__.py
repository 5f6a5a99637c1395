"""Data generation for S5Mars-layout datasets (synthetic rover-view scenes)."""
