"""Prometheus metrics (``GET /metrics``): HTTP, ingestion, commits, operations, queue,
and how far each embedding set's index and labelling queue lag behind its change feed.

Request metrics come from a small ASGI middleware; operation, queue and lag figures are
read from the catalog at scrape time, so they are the same whichever API replica is
scraped.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from chroma.catalog import Changes, Operations
from chroma.ingest import CommitResult

__all__ = ["Metrics", "MetricsMiddleware"]


class _CatalogCollector(Collector):
    def __init__(self, operations: Operations) -> None:
        self.operations = operations
        self.changes = Changes(operations.db)  # the same catalog, its change feed

    def collect(self) -> Iterator[GaugeMetricFamily]:
        depth = GaugeMetricFamily("chroma_operation_queue_depth",
                                  "Queued operations per kind.", labels=["kind"])
        states = GaugeMetricFamily("chroma_operations",
                                   "Operations per kind and state.", labels=["kind", "state"])
        try:
            for kind, n in self.operations.queue_depth().items():
                depth.add_metric([kind], n)
            for (kind, state), n in self.operations.counts_by_state().items():
                states.add_metric([kind, state], n)
        except Exception:  # a scrape must not fail because the catalog is away
            pass
        yield depth
        yield states
        yield from self._lag()

    def _lag(self) -> Iterator[GaugeMetricFamily]:
        labels = ["embedding_set"]
        head = GaugeMetricFamily("chroma_change_feed_head_seq",
                                 "Latest change number of each embedding set.", labels=labels)
        consumed = GaugeMetricFamily(
            "chroma_change_feed_consumed_seq",
            "Change number each consumer (index, queue) has consumed up to.",
            labels=[*labels, "consumer"])
        lag = GaugeMetricFamily(
            "chroma_change_feed_lag_changes",
            "Changes not yet consumed by the index or the labelling queue.",
            labels=[*labels, "consumer"])
        try:
            for row in self.changes.feed_lag():
                head.add_metric([row.key], row.head_seq)
                consumed.add_metric([row.key, "index"], row.indexed_seq)
                consumed.add_metric([row.key, "queue"], row.scored_seq)
                lag.add_metric([row.key, "index"], row.index_lag)
                lag.add_metric([row.key, "queue"], row.queue_lag)
        except Exception:  # a scrape must not fail because the catalog is away
            pass
        yield head
        yield consumed
        yield lag


class Metrics:
    """The registry of one API process and the instruments the code updates."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("chroma_http_requests_total", "HTTP requests.",
                                ["method", "route", "status"], registry=self.registry)
        self.latency = Histogram("chroma_http_request_duration_seconds", "HTTP latency.",
                                 ["method", "route"], registry=self.registry,
                                 buckets=(.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5,
                                          5, 10))
        self.records = Counter("chroma_records_ingested_total", "Records committed.",
                               ["split"], registry=self.registry)
        self.commit_records = Histogram(
            "chroma_commit_request_records", "Records per committed request.",
            registry=self.registry, buckets=(1, 10, 100, 1_000, 10_000, 100_000, 1_000_000))

    def watch_catalog(self, operations: Operations) -> None:
        self.registry.register(_CatalogCollector(operations))

    def observe_commits(self, results: list[CommitResult]) -> None:
        for result in results:
            self.commit_records.observe(result.count)
            production = sum(len(ids) for ids in result.production_ids.values())
            if production:
                self.records.labels("production").inc(production)
            if result.count - production:
                self.records.labels("training").inc(result.count - production)


class MetricsMiddleware:
    """Counts requests and their latency by route template (not raw path: bounded labels)."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        began = time.perf_counter()
        status: dict[str, Any] = {"code": 500}

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", "unmatched")
            self.metrics.requests.labels(scope["method"], template, str(status["code"])).inc()
            self.metrics.latency.labels(scope["method"], template).observe(
                time.perf_counter() - began)
