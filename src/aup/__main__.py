"""``python -m aup experiment.json`` runs an experiment (same as ``aup run``)."""

from aup.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
