"""Sends OpenTelemetry metrics to promflow's OTLP receiver with the real OpenTelemetry
Python SDK (tests/otlp.rs).

Usage: otlp_export.py BASE_URL MODE, MODE one of
  protobuf  the SDK's OTLP/HTTP exporter (protobuf), cumulative temporality;
  gzip      the same exporter with gzip compression;
  json      the same metrics, encoded by the SDK's encoder and sent as OTLP JSON
            (protobuf's JSON mapping, enums as integers, as OTLP/HTTP JSON requires);
  delta     a counter exported with delta temporality (Prometheus refuses it).
Prints JSON on stdout: {"resource": the resource's attributes (the test derives
target_info's labels from them), "exponential": {metric name: its data point as the
SDK sent it (scale, zero_count, count, sum, positive/negative offset and bucket
counts, exemplars)}, "exemplars": {metric name: the exemplars of its data point, for
the sums and explicit-bucket histograms that have some}} (the test derives the
expected native histograms and exemplars from those points).
"""

import base64
import json
import time
import sys
import urllib.request

from google.protobuf import json_format
from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.metrics import Observation
from opentelemetry.sdk.metrics import Counter, MeterProvider
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    InMemoryMetricReader,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.metrics.view import ExponentialBucketHistogramAggregation, View
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider

tracer = TracerProvider().get_tracer("promflow-test")

base, mode = sys.argv[1], sys.argv[2]
endpoint = base + "/api/v1/otlp/v1/metrics"

resource = Resource.create(
    {
        "service.name": "checkout",
        "service.namespace": "shop",
        "service.instance.id": "pod-" + mode,
        "host.name": "h1",
        "deployment.environment": "test",
    }
)
views = [
    View(instrument_name="latency.exp", aggregation=ExponentialBucketHistogramAggregation()),
    # Close values: the SDK keeps a scale above 8, which Prometheus merges down to 8.
    View(instrument_name="ratio.exp", aggregation=ExponentialBucketHistogramAggregation()),
]


def record(provider):
    meter = provider.get_meter("promflow-test", "1.0")
    if mode == "delta":
        meter.create_counter("delta.requests", unit="{request}").add(7)
        return
    requests = meter.create_counter("http.server.requests", unit="{request}")
    # In a sampled span: the SDK keeps an exemplar of the sum's measurement.
    with tracer.start_as_current_span("request"):
        requests.add(5, {"http.method": "GET", "http.status_code": 200})
    meter.create_counter("network.io", unit="By").add(1024, {"direction": "in"})
    queue = meter.create_up_down_counter("queue.items", unit="{item}")
    queue.add(5)
    queue.add(-2)
    meter.create_observable_gauge(
        "cpu.utilization",
        callbacks=[lambda _options: [Observation(0.25, {"cpu": "0"})]],
        unit="1",
    )
    duration = meter.create_histogram("http.server.duration", unit="ms")
    for v in (3, 7, 30):
        duration.record(v)
    latency = meter.create_histogram(
        "rpc.latency", unit="s", explicit_bucket_boundaries_advisory=[0.005, 0.01, 0.1, 1]
    )
    # In a span too: an exemplar per bucket measured (0.005, 0.1 and +Inf).
    with tracer.start_as_current_span("request"):
        for v in (0.003, 0.05, 2):
            latency.record(v)
            time.sleep(0.003)
    exp = meter.create_histogram("latency.exp", unit="s")
    # Inside a sampled span: the SDK's default (trace-based) exemplar filter keeps
    # exemplars with the span's trace and span ids. A few milliseconds apart: an
    # exemplar store keeps a series' exemplars in time order, and several in one
    # millisecond are kept by value order only from Prometheus 2.48 on.
    with tracer.start_as_current_span("request"):
        for v in (0, 0.2, 0.2, 1.5, 3, 100):
            exp.record(v)
            time.sleep(0.003)
    close = meter.create_histogram("ratio.exp", unit="1")
    for v in (1.001, 1.0015, 1.002, 1.003, 1.003):
        close.record(v)


def hex_ids(node):
    """OTLP JSON spells trace and span ids in hex, not in protobuf JSON's base64."""
    if isinstance(node, dict):
        for key in ("traceId", "spanId"):
            if key in node:
                node[key] = base64.b64decode(node[key]).hex()
        for value in node.values():
            hex_ids(value)
    elif isinstance(node, list):
        for value in node:
            hex_ids(value)


sent = []


class CapturingExporter(OTLPMetricExporter):
    """The SDK's exporter, remembering what it exports."""

    def export(self, metrics_data, *args, **kwargs):
        sent.append(metrics_data)
        return super().export(metrics_data, *args, **kwargs)


def exemplars(point):
    return [
        {
            "value": e.value,
            "time_unix_nano": e.time_unix_nano,
            "trace_id": format(e.trace_id, "032x") if e.trace_id else None,
            "span_id": format(e.span_id, "016x") if e.span_id else None,
            "filtered_attributes": dict(e.filtered_attributes or {}),
        }
        for e in (point.exemplars or [])
    ]


def sampled_points(metrics_data):
    """The exemplars of the sums' and explicit-bucket histograms' points, by metric."""
    out = {}
    for rm in metrics_data.resource_metrics:
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                if type(m.data).__name__ not in ("Sum", "Histogram"):
                    continue
                for p in m.data.data_points:
                    if p.exemplars:
                        out[m.name] = exemplars(p)
    return out


def exponential_points(metrics_data):
    out = {}
    for rm in metrics_data.resource_metrics:
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                if type(m.data).__name__ != "ExponentialHistogram":
                    continue
                (p,) = m.data.data_points
                out[m.name] = {
                    "scale": p.scale,
                    "zero_count": p.zero_count,
                    "count": p.count,
                    "sum": p.sum,
                    "positive": {"offset": p.positive.offset, "bucket_counts": list(p.positive.bucket_counts)},
                    "negative": {"offset": p.negative.offset, "bucket_counts": list(p.negative.bucket_counts)},
                    "exemplars": exemplars(p),
                }
    return out


if mode in ("protobuf", "gzip", "delta"):
    exporter = CapturingExporter(
        endpoint=endpoint,
        compression=Compression.Gzip if mode == "gzip" else Compression.NoCompression,
        preferred_temporality={Counter: AggregationTemporality.DELTA} if mode == "delta" else None,
    )
    reader = PeriodicExportingMetricReader(exporter, export_interval_millis=3_600_000)
    provider = MeterProvider(resource=resource, metric_readers=[reader], views=views)
    record(provider)
    if not provider.force_flush(timeout_millis=10_000):
        sys.exit("export failed")
    provider.shutdown()
    # The first export's points: shutdown exports again, the same cumulative counts
    # but no exemplars (the SDK hands each exemplar out once).
    points, sampled = {}, {}
    for data in sent:
        for name, point in exponential_points(data).items():
            points.setdefault(name, point)
        for name, point in sampled_points(data).items():
            sampled.setdefault(name, point)
elif mode == "json":
    reader = InMemoryMetricReader()
    provider = MeterProvider(resource=resource, metric_readers=[reader], views=views)
    record(provider)
    data = reader.get_metrics_data()
    points = exponential_points(data)
    sampled = sampled_points(data)
    request = encode_metrics(data)
    message = json.loads(json_format.MessageToJson(request, use_integers_for_enums=True))
    hex_ids(message)
    body = json.dumps(message).encode()
    http = urllib.request.Request(
        endpoint, data=body, headers={"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(http, timeout=10) as response:
        if response.status != 200:
            sys.exit(f"HTTP {response.status}")
        if json.loads(response.read()) != {}:
            sys.exit("unexpected response body")
else:
    sys.exit(f"unknown mode {mode}")

print(json.dumps({"resource": dict(resource.attributes), "exponential": points, "exemplars": sampled}))
