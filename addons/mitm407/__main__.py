"""``python -m mitm407 ...``: see ``cli.py``."""

from mitm407.cli import main

raise SystemExit(main())
