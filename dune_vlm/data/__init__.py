"""Synthetic satellite-embedding scenes for the five Mars-analog regions."""
