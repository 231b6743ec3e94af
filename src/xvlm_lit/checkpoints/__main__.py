"""Entry point of ``python -m xvlm_lit.checkpoints``."""

from xvlm_lit.checkpoints.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
