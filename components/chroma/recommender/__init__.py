"""The recommendation engine component: the I/O around the MHB and scoring maths.

Owns: the ``fit-mhb`` and ``recommend`` operations (reading training and production
records from the catalog and store, kNN answers from the query engine or, for small
training sets, exactly from the training vectors in memory (``exact.py``), writing model
artifacts and the sorted queue), and the assessment of production records on ``/log``.
Must not touch: the maths itself (``chroma.mhb``, ``chroma.recommend``: pure functions)
or HTTP (``chroma.api``).
Called by: the operation workers (``chroma.control.handlers``) and the API.
"""

from chroma.recommender.assessor import Assessor
from chroma.recommender.operations import run_fit_mhb, run_recommend

__all__ = ["Assessor", "run_fit_mhb", "run_recommend"]
