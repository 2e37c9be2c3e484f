"""Chroma service: log model embeddings, index them, rank production inputs to label next.

Subpackages, one component each (data flows api -> storage -> catalog -> index -> recommend):

* ``api``       FastAPI app (REST contract in ``chroma-api.yaml``)
* ``storage``   immutable parquet files through fsspec (local folder or ``s3://``)
* ``catalog``   PostgreSQL: embedding sets, datasets, file manifest, record index, operations
* ``ingest``    validation and the durable group-committed write path
* ``index``     ANN indexer and query engine over Qdrant (embedded Edge or remote server)
* ``mhb``       class-conditional Gaussian (Mahalanobis) indexer
* ``recommend`` scoring of production records into a ranked labelling queue
* ``control``   service control: supervisor, operations, status
* ``client``    Python client
* ``cli``       the ``chroma`` command
"""

__version__ = "0.1.0"
