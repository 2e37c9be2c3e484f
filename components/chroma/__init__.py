"""Chroma service: log model embeddings, index them, rank production inputs to label next.

Subpackages, one component each, top layer first (``.importlinter`` enforces that
nothing imports up; siblings on one line stay apart):

* ``cli``         the ``chroma`` command
* ``api``         FastAPI app (REST contract in ``chroma-api.yaml``)
  ``control``     process control: ``chroma run`` supervisor, workers that claim operations
  ``client``      Python client (HTTP only)
* ``operations``  the table of operation kinds and every handler (index, fit-mhb, ...)
* ``labelling``   the labelling queue: recommend and fit runs, paging, assessments on ``/log``
  ``search``      the query path: nearest live records of vectors or of a stored record
* ``ingest``      validation and the durable group-committed write path, compaction
  ``index``       the Qdrant query engine (embedded Edge or remote server), its hosting
  ``scoring``     pure maths: MHB (Mahalanobis) model, signals, ranking, exact kNN
* ``catalog``     PostgreSQL: every SQL statement (sets, datasets, files, records, queues)
  ``storage``     immutable parquet files through fsspec (local folder or ``s3://``)
* ``errors``, ``keys``, ``settings``, ``locks``, ``clock``: shared by all, importing none
  of the above
"""

__version__ = "0.1.0"
