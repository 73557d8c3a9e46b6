#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets into tests/fuzz/corpus/<target>/ from
what the repository already has (issue 13 item 2): the shared PromQL test expressions
(../shared/promql-tests, beside the repository, when present) and the rule
expressions of queries/*.yml; the configs of deploy/ and the tests (files, and the
YAML written inline in tests/*.rs); rule files and their groups (rules API bodies);
alert templates; exposition bodies; remote write / read bodies encoded here (protobuf
and Snappy by hand, so no module is needed). Each file is named by the hash of its
content, so reruns add nothing twice. Run from anywhere: python3 tests/fuzz/seed_corpus.py
"""
import hashlib
import pathlib
import re
import struct

import warnings

import yaml

warnings.simplefilter("ignore", DeprecationWarning)  # "\d" in a test literal

FUZZ = pathlib.Path(__file__).resolve().parent
ROOT = FUZZ.parent.parent
SHARED = ROOT.parent / "shared" / "promql-tests"
CORPUS = FUZZ / "corpus"
MAX_SEED = 16 * 1024


def put(target, data):
    if isinstance(data, str):
        data = data.encode()
    if not data or len(data) > MAX_SEED:
        return
    d = CORPUS / target
    d.mkdir(parents=True, exist_ok=True)
    (d / hashlib.sha1(data).hexdigest()[:16]).write_bytes(data)


def yaml_files(*dirs):
    for d in dirs:
        for p in sorted((ROOT / d).rglob("*.yml")):
            yield p, p.read_text()


def inline_yaml():
    """String literals of the tests that hold YAML documents (raw, or with `\\n`
    escapes); `format!` placeholders become an address, doubled braces single."""
    literal = re.compile(r'r(#+)"(.*?)"\1|"((?:[^"\\]|\\.)*)"', re.S)
    for p in sorted((ROOT / "tests").rglob("*.rs")):
        for m in literal.finditer(p.read_text()):
            text = m.group(2)
            if text is None:
                try:
                    text = m.group(3).encode().decode("unicode_escape")
                except UnicodeDecodeError:
                    continue
            if "\n" not in text or ":" not in text:
                continue
            if re.search(r"(?<!\{)\{[a-z_][a-z0-9_.()]*\}(?!\})", text) or "{{{{" in text:
                text = re.sub(r"(?<!\{)\{[a-z_][a-z0-9_.()]*(:[^}]*)?\}(?!\})", "127.0.0.1:9100", text)
                text = text.replace("{{", "{").replace("}}", "}")
            yield text


def docs(text):
    try:
        return [d for d in yaml.safe_load_all(text) if isinstance(d, dict)]
    except yaml.YAMLError:
        return []


def rule_groups(text):
    for d in docs(text):
        for g in d.get("groups") or []:
            if isinstance(g, dict):
                yield g


# PromQL: the shared test expressions and the rules' expressions.
eval_line = re.compile(r"^eval(?:_fail|_ordered|_warn|_info)?\s+"
                       r"(?:instant\s+at\s+\S+|range\s+from\s+\S+\s+to\s+\S+\s+step\s+\S+)\s+(.*)$")
for test in sorted(SHARED.rglob("*.test")) if SHARED.is_dir() else []:
    for line in test.read_text().splitlines():
        m = eval_line.match(line.strip())
        if m:
            put("promql", m.group(1))

texts = [t for _, t in yaml_files("queries", "deploy", "tests")] + list(inline_yaml())
for text in texts:
    for g in rule_groups(text):
        for r in g.get("rules") or []:
            if isinstance(r, dict) and isinstance(r.get("expr"), str):
                put("promql", r["expr"])
            for key in ("annotations", "labels"):
                for v in ((r or {}).get(key) or {}).values() if isinstance(r, dict) else []:
                    if isinstance(v, str) and "{{" in v:
                        put("template", v)
        put("rules", yaml.safe_dump(g, sort_keys=False))
    head = text.lstrip()
    if "groups:" in text:
        put("rules", text)
    if "route:" in text or "receivers:" in text:
        put("alertmanager_config", text)
    elif re.search(r"^(global|scrape_configs|rule_files|alerting|remote_write):", head, re.M):
        put("prometheus_config", text)

# Templates Prometheus's docs and tests use, one function each at least.
for t in [
    "{{ $labels.instance }} of {{ $labels.job }} is down ({{ $value }})",
    "{{ humanize $value }} {{ humanize1024 $value }} {{ humanizePercentage 0.5 }}",
    "{{ humanizeDuration $value }} {{ humanizeTimestamp $value }} {{ toTime $value }}",
    "{{ range query \"up\" }}{{ .Labels.instance }} {{ .Value }}\n{{ end }}",
    "{{ with query \"up\" }}{{ . | first | value | humanize }}{{ end }}",
    "{{ range query \"up\" | sortByLabel \"instance\" }}{{ label \"instance\" . }}{{ end }}",
    "{{ reReplaceAll \"(.*):.*\" \"$1\" $labels.instance }} {{ match \"^db\" $labels.instance }}",
    "{{ $labels.severity | toUpper }} {{ title \"a b\" }} {{ toLower \"X\" }} {{ safeHtml \"<b>\" }}",
    "{{ graphLink \"up\" }} {{ tableLink \"up\" }} {{ pathPrefix }} {{ externalURL }}",
    "{{ stripPort $labels.instance }} {{ stripDomain $labels.instance }} {{ parseDuration \"1h5m\" }}",
    "{{ $externalLabels.cluster }} {{ $externalURL }} {{ printf \"%.2f\" $value }}",
    "{{ define \"x\" }}[{{ . }}]{{ end }}{{ template \"x\" $value }}{{ args 1 \"a\" }}",
    "{{ if gt $value 1.0 }}high{{ else if eq $value 0.0 }}zero{{ else }}low{{ end }}",
    "{{ range $k, $v := $labels }}{{ $k }}={{ $v | printf \"%q\" }} {{ end }}",
    "{{- /* comment */ -}}{{ len $labels }} {{ index $labels \"job\" }} {{ strvalue . }}",
]:
    put("template", t)

# Exposition bodies in both formats.
for body in [
    "# HELP up Whether up.\n# TYPE up gauge\nup{job=\"a\",instance=\"b:1\"} 1 1700000000000\n",
    "# TYPE h histogram\nh_bucket{le=\"0.1\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_sum 0.3\nh_count 2\n",
    "# TYPE s summary\ns{quantile=\"0.5\"} NaN\ns_sum +Inf\ns_count 3\nm{a=\"\\\\\\n\\\"\"} -Inf\n",
    "# TYPE c counter\n# UNIT c seconds\nc_total 1 # {trace_id=\"x\"} 1 1.5\nc_created 1.7e9\n# EOF\n",
    "# TYPE g gauge\ng{a=\"b\"} 1.5e-3 1700000000.123\n# TYPE i info\ni_info{v=\"1\"} 1\n# TYPE ss stateset\nss{ss=\"a\"} 1\n# EOF\n",
]:
    put("exposition", body)


# Remote write / read: protobuf by hand, then Snappy with literals only.
def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def field(tag, wire, payload):
    key = varint(tag << 3 | wire)
    if wire == 2:
        return key + varint(len(payload)) + payload
    return key + payload


def s(tag, text):
    return field(tag, 2, text.encode())


def i64(tag, n):
    return field(tag, 0, varint(n & 0xFFFFFFFFFFFFFFFF))


def f64(tag, x):
    return field(tag, 1, struct.pack("<d", x))


def snappy(raw):
    out = bytearray(varint(len(raw)))
    for i in range(0, len(raw), 60):
        chunk = raw[i:i + 60]
        out.append((len(chunk) - 1) << 2)
        out += chunk
    return bytes(out)


def label(name, value):
    return s(1, name) + s(2, value)


def series(labels, samples):
    return (b"".join(field(1, 2, label(*l)) for l in labels)
            + b"".join(field(2, 2, f64(1, v) + i64(2, t)) for v, t in samples))


write_requests = [
    [series([("__name__", "up"), ("job", "a")], [(1.0, 1700000000000)])],
    [series([("__name__", "http_requests_total"), ("code", "200"), ("instance", "x:1")],
            [(1.0, 1000), (2.0, 2000), (float("nan"), 3000)]),
     series([("__name__", "temp"), ("room", "\u00e9t\u00e9")], [(-1.5, -1), (float("inf"), 0)])],
    [series([("job", "no_name")], [(1.0, 1)])],
    [],
]
for ts in write_requests:
    put("remote_write", snappy(b"".join(field(1, 2, t) for t in ts)))


def matcher(kind, name, value):
    return i64(1, kind) + s(2, name) + s(3, value)


def query(start, end, matchers):
    return i64(1, start) + i64(2, end) + b"".join(field(3, 2, m) for m in matchers)


read_requests = [
    [query(0, 600000, [matcher(0, "__name__", "http_requests")])],
    [query(0, 600000, [matcher(2, "__name__", "http_.*|foo"), matcher(1, "job", "x")]),
     query(-1000, 10**12, [matcher(3, "job", "(a|b)+"), matcher(0, "instance", "")])],
    [query(600000, 0, [matcher(0, "__name__", "up")])],
]
for qs in read_requests:
    body = b"".join(field(1, 2, q) for q in qs) + field(2, 2, varint(0))
    put("remote_read", snappy(body))


# Protobuf exposition bodies (length-delimited io.prometheus.client.MetricFamily),
# fed to the same `exposition` target: every metric type, a native histogram.
def zigzag(n):
    return (n << 1) ^ (n >> 63)


def u64(tag, n):
    return field(tag, 0, varint(n))


def sint(tag, n):
    return field(tag, 0, varint(zigzag(n) & 0xFFFFFFFFFFFFFFFF))


def metric_family(name, kind, help_text, metrics):
    return (s(1, name) + s(2, help_text) + u64(3, kind)
            + b"".join(field(4, 2, m) for m in metrics))


def pb_labels(labels):
    return b"".join(field(1, 2, label(*l)) for l in labels)


def delimited(*families):
    return b"".join(varint(len(f)) + f for f in families)


exemplar = field(1, 2, label("trace_id", "abc")) + f64(2, 0.5) + field(3, 2, i64(1, 1700000000))
bucket = lambda le, n, extra=b"": u64(1, n) + f64(2, le) + extra
for body in [
    delimited(metric_family("c_total", 0, "A counter.", [
        pb_labels([("a", "1")]) + field(3, 2, f64(1, 3.5) + field(2, 2, exemplar)) + i64(6, 1700000000000)])),
    delimited(
        metric_family("g", 1, "", [field(2, 2, f64(1, float("nan"))), pb_labels([("x", "y")]) + field(2, 2, f64(1, -1.0))]),
        metric_family("u", 3, "untyped", [field(5, 2, f64(1, 1e300))])),
    delimited(metric_family("s", 2, "A summary.", [field(4, 2, u64(1, 7) + f64(2, 1.5)
        + field(3, 2, f64(1, 0.5) + f64(2, 0.1)) + field(3, 2, f64(1, 0.99) + f64(2, 0.9)))])),
    delimited(metric_family("h", 4, "A histogram.", [field(7, 2, u64(1, 10) + f64(2, 12.5)
        + field(3, 2, bucket(0.1, 2)) + field(3, 2, bucket(1.0, 5, field(3, 2, exemplar)))
        + field(3, 2, bucket(float("inf"), 10)))])),
    delimited(metric_family("n", 4, "A native histogram.", [field(7, 2, u64(1, 6) + f64(2, 3.0)
        + sint(5, 3) + f64(6, 1e-128) + u64(7, 1)
        + field(12, 2, sint(1, -2) + u64(2, 2)) + sint(13, 2) + sint(13, -1)
        + field(9, 2, sint(1, 0) + u64(2, 1)) + sint(10, 1))])),
    delimited(metric_family("gh", 5, "", [field(7, 2, f64(4, 2.5) + field(3, 2, f64(4, 1.5) + f64(2, -1.0)))])),
]:
    put("exposition", body)


# Remote write 1.0 requests with native histograms (prompb.Histogram, unpacked
# repeated fields, as protobuf also reads them): valid, a reserved schema the receiver
# reduces, custom buckets, and ones the receiver refuses (spans, offsets, counts).
def span(offset, length):
    return sint(1, offset) + u64(2, length)


def prompb_histogram(count, schema, spans, deltas, ts, sum_=1.0, custom=(), float_counts=None):
    out = (f64(2, float(count)) if float_counts is not None else u64(1, count)) + f64(3, sum_) + sint(4, schema)
    out += b"".join(field(11, 2, span(o, n)) for o, n in spans)
    if float_counts is None:
        out += b"".join(sint(12, d) for d in deltas)
    else:
        out += b"".join(f64(13, c) for c in float_counts)
    out += b"".join(f64(16, c) for c in custom) + i64(15, ts)
    return out


for histograms in [
    [prompb_histogram(3, 0, [(0, 2)], [1, 1], 1000)],
    [prompb_histogram(3, 9, [(-1, 2)], [1, 1], 1000), prompb_histogram(2, 52, [(-5, 1), (10, 1)], [1, 0], 2000)],
    [prompb_histogram(3, -53, [(0, 2)], [1, 1], 1000, custom=(0.5, 1.0))],
    [prompb_histogram(3, 0, [(0, 3)], [1, 1], 1000), prompb_histogram(3, 0, [(0, 1), (-2, 1)], [1, 1], 1000)],
    [prompb_histogram(5, 0, [(0, 2)], [1, 1], 1000, sum_=float("nan")), prompb_histogram(3, 0, [(0, 2)], [], 1000, float_counts=[1.0, -2.0])],
]:
    ts = series([("__name__", "h")], []) + b"".join(field(4, 2, h) for h in histograms)
    put("remote_write", snappy(field(1, 2, ts)))
