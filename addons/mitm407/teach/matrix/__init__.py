"""The compatibility matrix: real clients against scenarios, rendered as tables.

``cases.py`` and ``clients.py`` are the declarative tables (add a row there),
``stage.py`` serves what the clients fetch (a page, a git repository, a pip
index), ``runner.py`` runs every client on every case, ``render.py`` writes
Markdown and HTML. ``python -m mitm407 matrix`` (``make matrix``) drives it.
"""
