"""The ``chroma`` command (typer): ``run``, ``serve``, ``upload`` and friends.

Owns: argument parsing and human-readable output. Must not hold logic of its own: each
command calls a component (api, control, client).
"""
