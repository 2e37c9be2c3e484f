"""Service control: how processes are started, supervised and stopped.

Owns: ``chroma run`` (embedded: its own PostgreSQL, the API), the data-directory lock
that refuses a second ``chroma run``, the supervision of its processes (their status
records written by a helper process: :mod:`chroma.control.status`) and the worker loop.
Must not touch: request handling or storage formats.
Called by: ``chroma.cli``.
"""
