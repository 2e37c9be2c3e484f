"""Operations: the units of background work and the one table that names them.

Owns: what a running operation sees (``context.py``: its row, catalog, store, progress
and interruption), the table of kinds (``kinds.py``: kind -> handler, worker, params,
IndexJob), every handler (``indexing.py``: ``index``/``reindex``; ``labelling.py``:
``fit-mhb``/``recommend``; ``projection.py``: ``project``; ``maintenance.py``:
``compact``/``expire``/``sleep``), their parameter models (``params.py``) and what else
starts when the API queues one (``launchers.py``: nothing embedded, an ``IndexJob`` in the cluster).

Must not touch: process control (claiming, leases, supervision: ``chroma.control`` runs
us), HTTP, SQL (through ``chroma.catalog``).
Called by: ``chroma.control`` (workers), ``chroma.api`` (validation, launcher), ``chroma.cli``.
"""
