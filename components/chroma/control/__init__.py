"""Service control: how processes are started, supervised and stopped.

Owns: ``chroma run`` (embedded: its own PostgreSQL, the API), the data-directory lock
that refuses a second ``chroma run``, and (next) worker supervision and operations.
Must not touch: request handling or storage formats.
Called by: ``chroma.cli``.
"""
