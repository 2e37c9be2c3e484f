"""Quality of the labelling queue: how well each signal finds records of unseen classes.

For each scenario, some classes are held out of training and logged as production next
to in-distribution production records (held-out records are ~10 % of production). A
classifier trained on the training classes plays the user's model: it gives every
production record an ``inference_class`` and class probabilities (``scores``), so the
held-out records get a confident-looking wrong class, as they would in real life.

Reported per signal alone, for the combined priority, and for baselines, in one run:

* AUROC of the score for "is a held-out record";
* P@k: precision of the top-k of the queue with k = number of held-out records
  (R-precision: 1.0 means the first k entries are exactly the held-out records).

Scenarios (no downloads; real data ships with scikit-learn):

* ``synthetic``: Gaussian mixture, 12 classes with their own covariances, 64-d,
  3 classes held out, logistic-regression model.
* ``digits-mlp``: sklearn's 8x8 digits; the embedding is the 64-unit hidden layer of an
  MLP trained on the training classes (a model embedding); 2 digits held out.
* ``digits-pixels``: the same split, raw pixels as embedding, logistic regression model.
* ``wine``: sklearn's wine (13 standardised features), 1 of 3 cultivars held out.

Baselines: ``knn_baseline`` = Euclidean distance to the k-th nearest training record
(exact, k=10); cleanlab's ``OutOfDistribution`` score from features and from predicted
probabilities, when cleanlab is installed. The kNN signals come from the service's own
search over the training vectors (``TrainingNeighbours``: exact below
``--approximate-min`` training records, default the service's setting, the inverted file
from there on; ``--approximate-min 1`` forces it on these small sets), and its recall@10
against exact neighbours is printed: a recall loss shows in the queue's figures.

Run: ``python bench/quality.py`` (add ``--seeds 5``; ``--tune`` grid-searches weights).
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.datasets import load_digits, load_wine
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.neighbors import NearestNeighbors
from sklearn.neural_network import MLPClassifier
from sklearn.preprocessing import StandardScaler

from chroma.settings import Settings

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import machine_info as shared_machine_info

from chroma.labelling.neighbours import KnnAnswer
from chroma.labelling.training import TrainingSet
from chroma.scoring import (
    DEFAULT_WEIGHTS,
    RecommendParams,
    compute_signals,
    fit_mhb,
    fit_reference,
    prioritise,
    rank_order,
    score_mhb,
    select_diverse,
)

K_NEIGHBOURS = 10
OOD_SHARE = 0.10


@dataclass(frozen=True)
class Scenario:
    """Training and production records as the service would receive them."""

    name: str
    train_embeddings: np.ndarray
    train_labels: np.ndarray  # label_class (str)
    train_predicted: np.ndarray  # the model's inference_class on training records
    train_probabilities: np.ndarray
    production_embeddings: np.ndarray
    production_predicted: np.ndarray
    production_probabilities: np.ndarray
    is_held_out: np.ndarray  # ground truth, never shown to the scorer
    production_truth: np.ndarray  # true class of production records, for page coverage


def _split(
    labels: np.ndarray, held_out: set[int], rng: np.random.Generator, train_share: float = 0.7
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(train rows, in-distribution production rows, held-out production rows)."""
    known = np.flatnonzero(~np.isin(labels, list(held_out)))
    rng.shuffle(known)
    cut = int(train_share * known.size)
    train, production = known[:cut], known[cut:]
    unseen = np.flatnonzero(np.isin(labels, list(held_out)))
    n_unseen = max(5, round(OOD_SHARE / (1 - OOD_SHARE) * production.size))
    unseen = rng.choice(unseen, size=min(n_unseen, unseen.size), replace=False)
    return train, production, unseen


def _with_model(
    name: str,
    embeddings: np.ndarray,
    labels: np.ndarray,
    rows: tuple[np.ndarray, np.ndarray, np.ndarray],
    model: Callable[[np.ndarray], np.ndarray],
    classifier: LogisticRegression | MLPClassifier,
) -> Scenario:
    train, production, unseen = rows
    both = np.concatenate([production, unseen])
    classes = classifier.classes_
    train_probabilities = classifier.predict_proba(model(train))
    production_probabilities = classifier.predict_proba(model(both))
    return Scenario(
        name=name,
        train_embeddings=embeddings[train].astype(np.float32),
        train_labels=labels[train].astype(str),
        train_predicted=classes[train_probabilities.argmax(axis=1)].astype(str),
        train_probabilities=train_probabilities,
        production_embeddings=embeddings[both].astype(np.float32),
        production_predicted=classes[production_probabilities.argmax(axis=1)].astype(str),
        production_probabilities=production_probabilities,
        is_held_out=np.r_[np.zeros(production.size, bool), np.ones(unseen.size, bool)],
        production_truth=labels[both].astype(str),
    )


def synthetic(seed: int) -> Scenario:
    rng = np.random.default_rng(seed)
    n_classes, dimension, per_class = 12, 64, 600
    centres = rng.normal(size=(n_classes, dimension)) * 0.4
    # A shared shape plus a milder per-class one: classes differ in covariance, as real
    # embeddings do, without the covariance alone giving every class away.
    shared = rng.normal(size=(dimension, dimension)) / np.sqrt(dimension)
    own = rng.normal(size=(n_classes, dimension, dimension)) / np.sqrt(dimension)
    mixings = shared + 0.3 * own
    labels = np.repeat(np.arange(n_classes), per_class)
    noise = rng.normal(size=(labels.size, dimension))
    embeddings = centres[labels] + np.einsum("nd,nde->ne", noise, mixings[labels])
    held_out = set(rng.choice(n_classes, 3, replace=False).tolist())
    rows = _split(labels, held_out, rng)
    classifier = LogisticRegression(max_iter=2000).fit(embeddings[rows[0]], labels[rows[0]])
    return _with_model("synthetic", embeddings, labels, rows, lambda r: embeddings[r], classifier)


def _digits(seed: int) -> tuple[np.ndarray, np.ndarray, tuple, np.random.Generator]:
    rng = np.random.default_rng(seed)
    digits = load_digits()
    held_out = set(rng.choice(10, 2, replace=False).tolist())
    return digits.data / 16.0, digits.target, _split(digits.target, held_out, rng), rng


def digits_mlp(seed: int) -> Scenario:
    pixels, labels, rows, _ = _digits(seed)
    scaler = StandardScaler().fit(pixels[rows[0]])
    inputs = scaler.transform(pixels)
    classifier = MLPClassifier(hidden_layer_sizes=(64,), max_iter=600, random_state=seed)
    classifier.fit(inputs[rows[0]], labels[rows[0]])
    hidden = np.maximum(inputs @ classifier.coefs_[0] + classifier.intercepts_[0], 0.0)
    return _with_model("digits-mlp", hidden, labels, rows, lambda r: inputs[r], classifier)


def digits_pixels(seed: int) -> Scenario:
    pixels, labels, rows, _ = _digits(seed)
    classifier = LogisticRegression(max_iter=2000).fit(pixels[rows[0]], labels[rows[0]])
    return _with_model("digits-pixels", pixels, labels, rows, lambda r: pixels[r], classifier)


def wine(seed: int) -> Scenario:
    rng = np.random.default_rng(seed)
    data = load_wine()
    held_out = {int(rng.integers(0, 3))}
    rows = _split(data.target, held_out, rng)
    features = StandardScaler().fit(data.data[rows[0]]).transform(data.data)
    classifier = LogisticRegression(max_iter=2000).fit(features[rows[0]], data.target[rows[0]])
    return _with_model("wine", features, data.target, rows, lambda r: features[r], classifier)


SCENARIOS: dict[str, Callable[[int], Scenario]] = {
    "synthetic": synthetic,
    "digits-mlp": digits_mlp,
    "digits-pixels": digits_pixels,
    "wine": wine,
}


def _unit(vectors: np.ndarray) -> np.ndarray:
    return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)


KNN: dict[str, int] = {"approximate_min": 50_000}
"""``--approximate-min``: the service's kNN switch (``recommend_approximate_knn_min``)."""

RECALL: dict[str, list[float]] = {}
"""Per scenario, recall@10 of the service's kNN against exact neighbours (scikit-learn)
on the production records of each seed."""


def _service_knn(scenario: Scenario) -> tuple[KnnAnswer, KnnAnswer]:
    """The nearest training records of the training records (themselves left out) and
    of production, found by the service's own search (``TrainingNeighbours``: exact, or
    the inverted file from ``--approximate-min`` training records on)."""
    n = len(scenario.train_embeddings)
    refs = [("train", str(i)) for i in range(n)]
    training = TrainingSet(refs, list(scenario.train_labels), list(scenario.train_predicted),
                           scenario.train_embeddings, distance="cosine")
    search = training.neighbours(KNN["approximate_min"])
    return (search.knn_answer(scenario.train_embeddings, K_NEIGHBOURS, exclude=refs),
            search.knn_answer(scenario.production_embeddings, K_NEIGHBOURS))


def _rows(answer: KnnAnswer) -> np.ndarray:
    return np.array([[int(record_id) for _, record_id in row] for row in answer.refs])


def _raw_signals(scenario: Scenario) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Raw signals of the training records (reference) and of production, as the service
    computes them, its kNN included (scikit-learn's exact neighbours only measure its
    recall)."""
    model = fit_mhb(scenario.train_embeddings, scenario.train_labels)
    train_knn, knn = _service_knn(scenario)
    exact = NearestNeighbors(n_neighbors=K_NEIGHBOURS).fit(_unit(scenario.train_embeddings))
    _, truth = exact.kneighbors(_unit(scenario.production_embeddings))
    RECALL.setdefault(scenario.name, []).append(float(np.mean(
        [len(set(found) & set(true)) / K_NEIGHBOURS
         for found, true in zip(_rows(knn).tolist(), truth.tolist(), strict=True)])))
    reference = compute_signals(
        score_mhb(model, scenario.train_embeddings, scenario.train_predicted),
        knn_distances=train_knn.distances,
        scores=scenario.train_probabilities,
        predicted_class=scenario.train_predicted,
        neighbour_labels=scenario.train_labels[_rows(train_knn)],
    )
    production = compute_signals(
        score_mhb(model, scenario.production_embeddings, scenario.production_predicted),
        knn_distances=knn.distances,
        scores=scenario.production_probabilities,
        predicted_class=scenario.production_predicted,
        neighbour_labels=scenario.train_labels[_rows(knn)],
    )
    embeddings, predicted = scenario.production_embeddings, scenario.production_predicted
    tied = score_mhb(model, embeddings, predicted, predicted_covariance="tied")
    per_class = score_mhb(model, embeddings, predicted, covariance="class")
    production["mhb_predicted [tied cov]"] = tied.predicted_distance.astype(float)
    production["mhb_nearest [class cov]"] = per_class.nearest_distance.astype(float)
    production["mhb_relative [class cov]"] = per_class.relative_distance.astype(float)
    return reference, production


def _baselines(scenario: Scenario) -> dict[str, np.ndarray]:
    index = NearestNeighbors(n_neighbors=K_NEIGHBOURS).fit(scenario.train_embeddings)
    distances, _ = index.kneighbors(scenario.production_embeddings)
    baselines = {"knn_baseline (k-th euclid)": distances[:, -1]}
    try:
        from cleanlab.outlier import OutOfDistribution
    except ImportError:
        return baselines
    features = OutOfDistribution()
    features.fit(features=scenario.train_embeddings, verbose=False)
    baselines["cleanlab OOD (features)"] = 1.0 - features.score(
        features=scenario.production_embeddings
    )
    classes = np.unique(scenario.train_labels)
    probabilities = OutOfDistribution()
    probabilities.fit(
        pred_probs=scenario.train_probabilities,
        labels=np.searchsorted(classes, scenario.train_labels),
        verbose=False,
    )
    baselines["cleanlab OOD (pred_probs)"] = 1.0 - probabilities.score(
        pred_probs=scenario.production_probabilities
    )
    return baselines


def _metrics(score: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    filled = np.where(np.isnan(score), -np.inf, score)
    auroc = roc_auc_score(truth, np.where(np.isinf(filled), np.nanmin(score) - 1, filled))
    k = int(truth.sum())
    top = np.argsort(-filled, kind="stable")[:k]
    return float(auroc), float(truth[top].mean())


def _combined(
    reference: Mapping[str, np.ndarray],
    production: Mapping[str, np.ndarray],
    params: RecommendParams,
) -> np.ndarray:
    service_signals = {name: production[name] for name in reference}
    return prioritise(service_signals, fit_reference(reference, params)).score


def evaluate(
    names: list[str], seeds: int, params: RecommendParams
) -> dict[str, dict[str, list[tuple[float, float]]]]:
    """{scenario: {method: [(auroc, p@k) per seed]}}"""
    results: dict[str, dict[str, list[tuple[float, float]]]] = {}
    for name in names:
        per_method: dict[str, list[tuple[float, float]]] = {}
        for seed in range(seeds):
            scenario = SCENARIOS[name](seed)
            reference, production = _raw_signals(scenario)
            methods = dict(production)
            methods["COMBINED (default)"] = _combined(reference, production, params)
            methods["combined (mean)"] = _combined(
                reference, production,
                RecommendParams(weights=params.weights, combination="mean"),
            )
            embeddings_only = ("mhb_nearest", "mhb_relative", "knn_distance")
            methods["combined (embeddings only: no class, no scores)"] = _combined(
                {name: reference[name] for name in embeddings_only},
                {name: production[name] for name in embeddings_only},
                params,
            )
            methods.update(_baselines(scenario))
            for method, score in methods.items():
                per_method.setdefault(method, []).append(_metrics(score, scenario.is_held_out))
        results[name] = per_method
    return results


PAGE_SIZE = 20
POOL_SIZE = 200


def diversity_report(names: list[str], seeds: int) -> None:
    """What a first page of the queue holds, plain score order vs ``select_diverse``."""
    print(f"\n## First page of {PAGE_SIZE}: plain order vs diverse (pool = top {POOL_SIZE})\n")
    print("| scenario | held-out records (plain / diverse) | distinct held-out classes "
          "(plain / diverse) | distinct classes (plain / diverse) |")
    print("|---|---|---|---|")
    for name in names:
        counts = []
        for seed in range(seeds):
            scenario = SCENARIOS[name](seed)
            reference, production = _raw_signals(scenario)
            score = _combined(reference, production, RecommendParams())
            pool = rank_order(score)[:POOL_SIZE]
            diverse = pool[
                select_diverse(scenario.production_embeddings[pool], score[pool], PAGE_SIZE)
            ]
            row = []
            for page in (pool[:PAGE_SIZE], diverse):
                truth = scenario.production_truth[page]
                held = scenario.is_held_out[page]
                row += [held.sum(), len(set(truth[held])), len(set(truth))]
            counts.append(row)
        mean = np.mean(counts, axis=0)
        print(f"| {name} | {mean[0]:.1f} / {mean[3]:.1f} | {mean[1]:.1f} / {mean[4]:.1f} | "
              f"{mean[2]:.1f} / {mean[5]:.1f} |")


TUNING_GRID: dict[str, tuple[float, ...]] = {
    "mhb_predicted": (1.0, 2.0, 4.0),
    "mhb_nearest": (0.0, 0.5, 1.0),
    "mhb_relative": (0.0, 0.5),
    "knn_distance": (0.0, 0.5, 1.0),
    "entropy": (0.0, 0.5, 1.0),
    "low_margin": (0.0,),
    "disagreement": (0.0, 0.5),
}


def tune(names: list[str], seeds: int) -> None:
    """Grid over signal weights; prints the best by mean AUROC over scenarios x seeds."""
    cached = []
    for name in names:
        for seed in range(seeds):
            scenario = SCENARIOS[name](seed)
            cached.append((_raw_signals(scenario), scenario.is_held_out))
    ranked = []
    for values in itertools.product(*TUNING_GRID.values()):
        weights = dict(zip(TUNING_GRID, values, strict=True))
        params = RecommendParams(weights=weights)
        metrics = np.array([
            _metrics(_combined(reference, production, params), truth)
            for (reference, production), truth in cached
        ])
        ranked.append((metrics[:, 0].mean(), metrics[:, 0].min(), metrics[:, 1].mean(), weights))
    ranked.sort(key=lambda item: -item[0])
    print("\n## Weight grid: mean AUROC over scenarios x seeds (worst run), mean P@k\n")
    for mean, worst, precision, weights in ranked[:12]:
        shown = {k: v for k, v in weights.items() if v}
        print(f"- AUROC {mean:.4f} (worst {worst:.4f}), P@k {precision:.3f}: {shown}")


def machine_info() -> str:
    """The shared machine line plus what bounds numpy here: BLAS threads and load."""
    try:
        from threadpoolctl import threadpool_info

        blas = ", ".join(
            f"{info['internal_api']} {info['num_threads']} threads" for info in threadpool_info()
        )
    except ImportError:
        blas = "unknown"
    return (
        shared_machine_info(("numpy", "scipy", "scikit-learn", "cleanlab"))
        + f"\nBLAS: {blas}; load average at start {os.getloadavg()[0]:.1f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=3, help="held-out splits per scenario")
    parser.add_argument("--scenarios", nargs="*", default=list(SCENARIOS), choices=SCENARIOS)
    parser.add_argument("--tune", action="store_true", help="grid-search the signal weights")
    parser.add_argument("--approximate-min", type=int,
                        default=Settings().recommend_approximate_knn_min,
                        help="training records from which the kNN is approximate (the "
                             "service's CHROMA_RECOMMEND_APPROXIMATE_KNN_MIN; 1: always)")
    args = parser.parse_args()
    KNN["approximate_min"] = args.approximate_min

    started = time.perf_counter()
    print(f"# Labelling-queue quality (held-out classes), {args.seeds} seeds\n")
    print(f"Machine: {machine_info()}\n")
    print(f"Default weights: {dict(DEFAULT_WEIGHTS)}, combination 'evidence'\n")
    print(f"kNN: the service's TrainingNeighbours, approximate (inverted file) from "
          f"{args.approximate_min:,} training records\n")
    results = evaluate(args.scenarios, args.seeds, RecommendParams())
    methods = list(next(iter(results.values())))
    for scenario in results.values():
        methods += [m for m in scenario if m not in methods]
    header = "| method | " + " | ".join(f"{name} AUROC | {name} P@k" for name in results) + " |"
    print(header)
    print("|" + "---|" * (1 + 2 * len(results)))
    for method in methods:
        cells = []
        for scenario in results.values():
            runs = np.array(scenario.get(method, [(np.nan, np.nan)]))
            cells += [f"{runs[:, 0].mean():.3f}", f"{runs[:, 1].mean():.3f}"]
        print(f"| {method} | " + " | ".join(cells) + " |")
    print(
        "\nMean over seeds. P@k: precision of the top k, k = number of held-out records "
        f"(~{OOD_SHARE:.0%} of production). Signals listed alone are raw values, ranked."
    )
    print("\nkNN recall@10 of production against exact neighbours (scikit-learn), mean "
          "over seeds: " + ", ".join(f"{name} {np.mean(values):.3f}"
                                     for name, values in RECALL.items()))
    diversity_report(args.scenarios, args.seeds)
    if args.tune:
        tune(args.scenarios, args.seeds)
    print(f"\n(ran in {time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
