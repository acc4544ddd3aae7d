"""Faults injected on top of correct authentication (expiry, rotation, drops, broken challenges, ...).

``registry.py`` lists every fault (one module each, or one per family) and
parses a scenario's ``faults:``; ``engine.py`` runs them per request;
``base.py`` holds what they share. See docs/faults.md.
"""
