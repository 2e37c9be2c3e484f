"""Quickstart: log a training set and production traffic, read the labelling queue, search.

Start the server first (`make run`), then, in the project's venv (`source .venv/bin/activate`):

    python examples/quickstart.py [URL]      # URL: else $CHROMA_URL, else http://127.0.0.1:8000

Every record has a fixed id and the data is seeded, so running it again logs the same
records again (an upsert): the counts stay the same.
"""

from __future__ import annotations

import os
import sys
import time

import numpy as np

from chroma.client import Client
from chroma.errors import Unavailable

url = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("CHROMA_URL", "http://127.0.0.1:8000")
model = {"model": "resnet50", "version": "3", "layer": "avgpool"}
DIM = 8  # small, so the README's curl examples can spell out a vector of this set
rng = np.random.default_rng(0)

# Training data: three classes around three centres.
centres = rng.normal(size=(3, DIM)) * 4
labels = rng.integers(0, 3, size=3000)
train = centres[labels] + rng.normal(size=(3000, DIM))
# Production traffic: mostly like training, the last 50 from somewhere new.
production = np.vstack([centres[rng.integers(0, 3, size=450)] + rng.normal(size=(450, DIM)),
                        rng.normal(size=(50, DIM)) * 4 + 12])

# batch_size=1000: the 3,000 training records go as three Arrow batches, with a progress bar.
with Client(url, batch_size=1000) as client:
    with client.training(model, "quickstart-train") as session:
        session.log_many(train, ids=[f"train-{i}" for i in range(len(train))],
                         label_classes=[f"class-{c}" for c in labels],
                         input_uris=[f"s3://my-bucket/train/{i}.jpg" for i in range(len(train))])

    with client.production(model, "quickstart-prod") as session:
        for i, vector in enumerate(production):
            session.log(vector, id=f"req-{i}", input_uri=f"https://api.example/requests/{i}",
                        scores={"class-0": 0.5, "class-1": 0.3, "class-2": 0.2})

    for es in client.embedding_sets():
        print(f"embedding set {es['key']} {es['fields']} dim={es['dimension']} "
              f"training={es['counts']['training']} production={es['counts']['production']}")
    for dataset in client.datasets():
        print(f"dataset {dataset['name']:<20} {dataset['split']:<10} "
              f"{dataset['record_count']} records")

    # Committing records queued an index and a recommend operation: wait for the queue.
    started = time.monotonic()
    items: list[dict] = []
    while not items and time.monotonic() - started < 300:
        items = client.recommendations(model, limit=5, datasets=["quickstart-prod"])["items"]
        if not items:
            time.sleep(1)
    if not items:
        sys.exit("no recommendations after 300 s: see `chroma status` and `chroma op list`")
    print(f"labelling queue (after {time.monotonic() - started:.0f} s), best first:")
    for item in items:
        print(f"  {item['id']:<8} score={item['score']:.3f} verdict={item['verdict']:<5} "
              f"{item['input_uri']}")

    # Search: the training records nearest to the queue's head (the index is built in the
    # background too; until its first version exists a search answers 503 Unavailable).
    head = items[0]["id"]
    while True:
        try:
            (hits,) = client.query(model, record_id=head, dataset="quickstart-prod", k=3,
                                   filter={"split": "training"})
            break
        except Unavailable:
            if time.monotonic() - started > 300:
                raise
            time.sleep(1)
    print(f"nearest to {head}: " + ", ".join(f"{h['id']} ({h['distance']:.3f})" for h in hits))
