"""Python client of the REST API.

Owns: batching, the Arrow bulk path for large batches, progress bars, retries of
transient failures (safe because the client fixes record ids before sending),
training/production sessions with local JSONL buffering.
Must not touch: server internals; it speaks only HTTP.

    from chroma.client import Client
    with Client("http://127.0.0.1:8000") as client:
        with client.training({"model": "resnet50", "version": "3"}, "train-v1") as train:
            train.log_many(embeddings, label_classes=labels)
"""

from chroma.client.client import Client
from chroma.client.sessions import ProductionSession, Session, TrainingSession

__all__ = ["Client", "ProductionSession", "Session", "TrainingSession"]
