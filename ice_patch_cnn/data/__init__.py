"""Synthetic HiRISE-like scenes with ice-patch ground truth (see synthetic.py)."""
