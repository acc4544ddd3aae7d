"""``python -m mitm407 ...``: see ``cli.py``."""

from .cli import main

raise SystemExit(main())
