// A service instrumented with the real Prometheus Go client (client_golang, Debian's
// golang-github-prometheus-client-golang-dev), for tests/client_golang.rs: one
// latency histogram with native buckets (and the classic default buckets beside),
// served by promhttp, which negotiates the protobuf format with a scraper that asks
// for it. The test drives it: `GET /observe?handler=H&value=V&n=N` records N
// observations of V seconds; `GET /step` counts a finished step in `steps_total`.
// It listens on 127.0.0.1 (port 0: any free one) and prints its address on stdout.
package main

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

func main() {
	registry := prometheus.NewRegistry()
	latency := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:                           "http_request_duration_seconds",
		Help:                           "Request latency.",
		Buckets:                        prometheus.DefBuckets,
		NativeHistogramBucketFactor:    1.1,
		NativeHistogramMaxBucketNumber: 160,
	}, []string{"handler"})
	steps := prometheus.NewCounter(prometheus.CounterOpts{
		Name: "steps_total",
		Help: "Steps the test finished.",
	})
	registry.MustRegister(latency, steps)

	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(registry, promhttp.HandlerOpts{}))
	mux.HandleFunc("/observe", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		value, err := strconv.ParseFloat(q.Get("value"), 64)
		if err != nil {
			http.Error(w, "value: "+err.Error(), http.StatusBadRequest)
			return
		}
		n, err := strconv.Atoi(q.Get("n"))
		if err != nil || n < 0 {
			http.Error(w, "n: a count is needed", http.StatusBadRequest)
			return
		}
		observer := latency.WithLabelValues(q.Get("handler"))
		for i := 0; i < n; i++ {
			observer.Observe(value)
		}
	})
	mux.HandleFunc("/step", func(w http.ResponseWriter, r *http.Request) {
		steps.Inc()
	})

	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println(listener.Addr().String())
	if err := http.Serve(listener, mux); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
