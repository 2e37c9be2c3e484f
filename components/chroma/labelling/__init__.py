"""Labelling: the queue of production records worth labelling next, and why.

Owns: the I/O around the scoring maths: reading training and production records from
the catalog and store (a set's training data once per run, ``training.py``), kNN answers
from the query engine or, for small training sets, exactly from the training vectors in
memory, keeping the MHB model and scoring reference (``scorer.py``), the ``fit-mhb`` and
``recommend`` runs that fill the sorted queue (``runs.py``), and the assessment of
production records on ``/log`` (``assessor.py``). The queue's SQL is in
``chroma.catalog.recommendations``.

Must not touch: the maths itself (``chroma.scoring``: pure functions), HTTP
(``chroma.api``), the operation queue and workers (``chroma.operations`` runs our runs).
Called by: the operation handlers and the API.
"""

from chroma.labelling.assessor import Assessor
from chroma.labelling.runs import LabellingJob, fit_mhb_of, recommend_one

__all__ = ["Assessor", "LabellingJob", "fit_mhb_of", "recommend_one"]
