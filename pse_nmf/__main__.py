"""``python -m pse_nmf``: the ``pse-nmf`` command line interface."""

from ._cli import main

if __name__ == "__main__":
    raise SystemExit(main())
