#!/usr/bin/env python3
"""RSS per active series of promflow: one process, or a cluster of N processes on
127.0.0.1 (README, "Sizing a cluster").

A synthetic fleet in this script (TARGETS exporters, default 50, each serving
PER_TARGET gauge series, default 2,000, values changing at every scrape, as
benches/compare.rs's bulk series) is scraped every 5s; once every series is in
(TARGETS x (PER_TARGET + 5): the fleet's and each target's up/scrape_* series,
and with `rules` the 20 recorded ones),
after SETTLE seconds (default 60), it prints each process's active series
(`promflow_active_series`), RSS (VmRSS) and RSS per series, and the cluster's total.
With `rules`, a recording rule sums every series by one of 20 label values (the rule
host, process 0, evaluates it over every process's samples).

    python3 benches/cluster_memory.py target/release/promflow 1
    python3 benches/cluster_memory.py target/release/promflow 3 [rules]
"""
import http.server
import os
import random
import re
import socket
import socketserver
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request


class Exporter(http.server.BaseHTTPRequestHandler):
    per_target = 0

    def do_GET(self):
        lines = ["# TYPE fleet_value gauge"]
        for i in range(self.per_target):
            lines.append('fleet_value{family="f%d",series="%d"} %.2f' % (i % 20, i, random.random() * 100))
        body = ("\n".join(lines) + "\n").encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def main():
    binary, n = sys.argv[1], int(sys.argv[2])
    with_rules = sys.argv[3:4] == ["rules"]
    targets = int(os.environ.get("TARGETS", 50))
    Exporter.per_target = int(os.environ.get("PER_TARGET", 2000))
    settle = int(os.environ.get("SETTLE", 60))
    addresses = []
    for _ in range(targets):
        server = Server(("127.0.0.1", 0), Exporter)
        addresses.append("127.0.0.1:%d" % server.server_address[1])
        threading.Thread(target=server.serve_forever, daemon=True).start()
    d = tempfile.mkdtemp(prefix="promflow-cluster-memory-")
    rules = ""
    if with_rules:
        with open(f"{d}/rules.yml", "w") as f:
            f.write("groups:\n  - name: fleet\n    rules:\n      - record: family:fleet_value:sum\n"
                    "        expr: sum by (family) (fleet_value)\n")
        rules = f"rule_files: ['{d}/rules.yml']\n"
    listed = ", ".join(f"'{a}'" for a in addresses)
    with open(f"{d}/promflow.yml", "w") as f:
        f.write(f"global:\n  scrape_interval: 5s\n  evaluation_interval: 5s\n{rules}"
                f"scrape_configs:\n  - job_name: fleet\n    static_configs:\n      - targets: [{listed}]\n")
    webs = [free_port() for _ in range(n)]
    if n > 1:
        with open(f"{d}/hosts", "w") as f:
            f.write("".join(f"127.0.0.1:{free_port()} http://127.0.0.1:{w}\n" for w in webs))
    procs = []
    for i in range(n):
        args = [binary, f"--config.file={d}/promflow.yml", f"--storage.tsdb.path={d}/data-{i}",
                f"--web.listen-address=127.0.0.1:{webs[i]}"]
        if n > 1:
            args += [f"--cluster.processes={n}", f"--cluster.process-id={i}", f"--cluster.hostfile={d}/hosts"]
        procs.append(subprocess.Popen(args, stdout=open(f"{d}/log-{i}", "w"), stderr=subprocess.STDOUT))

    def metric(i, name):
        try:
            body = urllib.request.urlopen(f"http://127.0.0.1:{webs[i]}/metrics", timeout=10).read().decode()
        except OSError:
            return None
        m = re.search(rf"^{name} (\S+)$", body, re.M)
        return float(m.group(1)) if m else None

    def rss(pid):
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        return 0

    try:
        # The fleet's series, each target's up/scrape_* and the 20 recorded ones.
        want = targets * (Exporter.per_target + 5) + (20 if with_rules else 0)
        start = time.time()
        while sum(metric(i, "promflow_active_series") or 0 for i in range(n)) < want:
            if time.time() - start > 300:
                sys.exit("timed out waiting for the series: %s" % [metric(i, "promflow_active_series") for i in range(n)])
            time.sleep(2)
        print(f"{want} series in after {time.time() - start:.0f}s; settling {settle}s", flush=True)
        time.sleep(settle)
        total = 0
        for i, p in enumerate(procs):
            series, r = metric(i, "promflow_active_series") or 0, rss(p.pid)
            total += r
            print(f"process {i}: {series:.0f} active series, RSS {r / 1e6:.1f} MB, {r / max(series, 1):.0f} B/series")
        print(f"all: {want} series, RSS {total / 1e6:.1f} MB, {total / want:.0f} B/series")
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait()


if __name__ == "__main__":
    main()
