"""Prometheus metrics of one app, in a registry of its own (several apps may live in one process).

- ``nue_requests_total{model, status}``: transcription requests by HTTP status (499: the client
  went away before the answer);
- ``nue_request_duration_seconds{model}``: latency histogram of answered transcriptions;
- ``nue_audio_seconds_total{model}``: audio seconds transcribed;
- engine gauges read at scrape time: ``nue_queue_depth`` (requests waiting for admission; a long
  file counts once per chunk), ``nue_queued_audio_seconds``, ``nue_running_requests``,
  ``nue_running_rows``, ``nue_cached_tokens``; and the engine's counters
  ``nue_generated_tokens_total`` and ``nue_admitted_audio_seconds_total``.
"""

from __future__ import annotations

from typing import Callable, Iterator, Mapping

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from nue_core.inference.engine import EngineStats

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)


class _EngineCollector:
    """Reads every served engine's stats when Prometheus scrapes."""

    def __init__(self, stats: Callable[[], Mapping[str, EngineStats]]) -> None:
        self.stats = stats

    def describe(self) -> list[Metric]:
        return []  # no collect() at registration: the engines may not be loaded yet

    def collect(self) -> Iterator[Metric]:
        gauges = {
            "nue_queue_depth": ("requests (file chunks) waiting for admission", "queued_requests"),
            "nue_queued_audio_seconds": ("audio seconds waiting for admission", "queued_seconds"),
            "nue_running_requests": ("requests (file chunks) decoding now", "running_requests"),
            "nue_running_rows": ("rows of the running batch", "running_rows"),
            "nue_cached_tokens": ("cached positions of the running rows", "cached_tokens"),
        }
        counters = {
            "nue_generated_tokens": ("tokens decoded, in total", "tokens_generated"),
            "nue_admitted_audio_seconds": ("audio seconds admitted to decoding, in total", "seconds_admitted"),
        }
        snapshot = dict(self.stats())
        for name, (doc, attr) in gauges.items():
            family = GaugeMetricFamily(name, doc, labels=["model"])
            for model, stats in snapshot.items():
                family.add_metric([model], float(getattr(stats, attr)))
            yield family
        for name, (doc, attr) in counters.items():
            family = CounterMetricFamily(name, doc, labels=["model"])
            for model, stats in snapshot.items():
                family.add_metric([model], float(getattr(stats, attr)))
            yield family


class ServerMetrics:
    """The metrics of one app (module docstring).

    Args:
        stats: served model name -> its engine's stats, for the models loaded so far.
    """

    def __init__(self, stats: Callable[[], Mapping[str, EngineStats]]) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.requests = Counter("nue_requests", "transcription requests by HTTP status", ["model", "status"],
                                registry=self.registry)
        self.latency = Histogram("nue_request_duration_seconds", "latency of answered transcription requests",
                                 ["model"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.audio_seconds = Counter("nue_audio_seconds", "audio seconds transcribed", ["model"],
                                     registry=self.registry)
        self.registry.register(_EngineCollector(stats))

    def observe(self, model: str, status: int, seconds: float | None = None, audio_seconds: float = 0.0) -> None:
        """Count one request; ``seconds`` (its latency) only for answered ones."""
        self.requests.labels(model, str(status)).inc()
        if seconds is not None:
            self.latency.labels(model).observe(seconds)
        if audio_seconds:
            self.audio_seconds.labels(model).inc(audio_seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
