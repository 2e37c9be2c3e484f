"""Quickstart: log a small training set and a production set, then list what is stored.

Start the server first (`make run`, or `.venv/bin/chroma run`), then:

    .venv/bin/python examples/quickstart.py [http://127.0.0.1:8000]
"""

from __future__ import annotations

import sys

import numpy as np

from chroma.client import Client

url = sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:8000"
model = {"model": "resnet50", "version": "3", "layer": "avgpool"}
rng = np.random.default_rng(0)

with Client(url) as client:
    # Training data: three classes around three centres.
    centres = rng.normal(size=(3, 64)) * 4
    labels = rng.integers(0, 3, size=3000)
    train = centres[labels] + rng.normal(size=(3000, 64))
    with client.training(model, "quickstart-train") as session:
        session.log_many(train, label_classes=[f"class-{c}" for c in labels],
                         input_uris=[f"s3://my-bucket/train/{i}.jpg" for i in range(3000)])

    # Production traffic: mostly like training, some from somewhere new.
    production = np.vstack([centres[rng.integers(0, 3, size=450)] + rng.normal(size=(450, 64)),
                            rng.normal(size=(50, 64)) * 4 + 12])
    with client.production(model, "quickstart-prod") as session:
        for i, vector in enumerate(production):
            session.log(vector, id=f"req-{i}", input_uri=f"https://api.example/requests/{i}",
                        scores={"class-0": 0.5, "class-1": 0.3, "class-2": 0.2})

    for es in client.embedding_sets():
        print(f"embedding set {es['key'][:12]}… {es['fields']} dim={es['dimension']} "
              f"training={es['counts']['training']} production={es['counts']['production']}")
    for dataset in client.datasets():
        print(f"dataset {dataset['name']:<20} {dataset['split']:<10} "
              f"{dataset['record_count']} records")
