"""Train the full S5Mars semi-supervised method (mean teacher, AugIN, SAM-Mix, soft-to-hard).

Every component can be switched off from the config (``semi.*.enabled``) or with flags, so the
ablation table runs from configs alone. ``python -m s5mars_ssl.train_semi --help``.
"""

from s5mars_ssl.cli_common import main as _main


def main(argv=None) -> int:
    """The ``s5mars-train-semi`` entry point."""
    return _main("semi", argv)


if __name__ == "__main__":
    raise SystemExit(main())
