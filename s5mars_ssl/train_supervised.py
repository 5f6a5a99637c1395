"""Train the supervised-only baseline on the labelled split (OHEM cross-entropy).

``python -m s5mars_ssl.train_supervised --help``.
"""

from s5mars_ssl.cli_common import main as _main


def main(argv=None) -> int:
    """The ``s5mars-train-supervised`` entry point."""
    return _main("supervised", argv)


if __name__ == "__main__":
    raise SystemExit(main())
