package main

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tinylb/lb"
)

// Collector exports a balancer's [lb.Stats] as Prometheus metrics. It
// takes one Stats snapshot per scrape and builds constant metrics from it,
// so the balancer keeps no Prometheus state and its request path is not
// touched: the counters are the balancer's own atomics.
//
// Metrics, each backend labelled by its URL:
//
//	tinylb_backend_requests_total{backend}          counter  attempts started
//	tinylb_backend_failures_total{backend}          counter  attempts that failed
//	tinylb_backend_retries_total{backend}           counter  attempts that retried an earlier one
//	tinylb_backend_active_requests{backend}         gauge    attempts in flight
//	tinylb_backend_up{backend}                      gauge    1 if it takes requests (up, slow-start, probing)
//	tinylb_backend_state{backend,state}             gauge    1 for its current state, 0 for the others
//	tinylb_backend_weight{backend}                  gauge    configured weight
//	tinylb_backend_effective_weight{backend}        gauge    weight in effect now
//	tinylb_backend_backup{backend}                  gauge    1 for a backup backend
//	tinylb_backend_latency_seconds{backend}         histogram time to response headers
//	tinylb_backend_latency_ewma_seconds{backend}    gauge    its moving average
//	tinylb_backend_last_check_timestamp_seconds{backend} gauge time of the last active check
//	tinylb_backend_last_check_success{backend}      gauge    1 if the last active check passed
//	tinylb_unavailable_total                        counter  requests answered 503: no backend
//	tinylb_failed_total                             counter  requests answered 502/504
//	tinylb_panic_mode                               gauge    1 while panic mode balances over unhealthy backends
//	tinylb_events_dropped_total                     counter  events the event hook was too slow to take
//
// The last-check metrics appear only for backends that have been checked.
type Collector struct {
	bal *lb.Balancer

	requests, failures, retries, active              *prometheus.Desc
	up, state, weight, effWeight, backup             *prometheus.Desc
	latency, latencyEWMA, lastCheckTime, lastCheckOK *prometheus.Desc
	unavailable, failed, panicMode, eventsDropped    *prometheus.Desc
}

// allStates are the states tinylb_backend_state reports, one series each.
var allStates = []lb.State{
	lb.StateUp, lb.StateSlowStart, lb.StateDown, lb.StateEjected,
	lb.StateProbing, lb.StateDraining, lb.StateMaintenance, lb.StateClosed,
}

// NewCollector returns a collector of bal's metrics. constLabels (may be
// nil) are added to every metric, to tell several balancers apart.
func NewCollector(bal *lb.Balancer, constLabels prometheus.Labels) *Collector {
	backend := []string{"backend"}
	d := func(name, help string, labels []string) *prometheus.Desc {
		return prometheus.NewDesc(name, help, labels, constLabels)
	}
	return &Collector{
		bal:           bal,
		requests:      d("tinylb_backend_requests_total", "Attempts started on the backend, retries included.", backend),
		failures:      d("tinylb_backend_failures_total", "Attempts on the backend that counted as failures.", backend),
		retries:       d("tinylb_backend_retries_total", "Attempts on the backend that retried an earlier attempt.", backend),
		active:        d("tinylb_backend_active_requests", "Attempts in flight on the backend, streams and upgraded connections included.", backend),
		up:            d("tinylb_backend_up", "1 if the backend takes requests (up, slow-start or probing), else 0.", backend),
		state:         d("tinylb_backend_state", "1 for the backend's current state, 0 for the others.", []string{"backend", "state"}),
		weight:        d("tinylb_backend_weight", "Configured weight of the backend.", backend),
		effWeight:     d("tinylb_backend_effective_weight", "Weight of the backend in effect now (lower during slow start or after failures).", backend),
		backup:        d("tinylb_backend_backup", "1 if the backend is a backup, else 0.", backend),
		latency:       d("tinylb_backend_latency_seconds", "Time from sending an attempt to its response headers.", backend),
		latencyEWMA:   d("tinylb_backend_latency_ewma_seconds", "Moving average of the time to response headers.", backend),
		lastCheckTime: d("tinylb_backend_last_check_timestamp_seconds", "Unix time of the backend's last active health check.", backend),
		lastCheckOK:   d("tinylb_backend_last_check_success", "1 if the backend's last active health check passed, else 0.", backend),
		unavailable:   d("tinylb_unavailable_total", "Requests answered 503 because no backend could take them.", nil),
		failed:        d("tinylb_failed_total", "Requests answered 502 or 504 after their attempts failed.", nil),
		panicMode:     d("tinylb_panic_mode", "1 while panic mode balances over unhealthy backends, else 0.", nil),
		eventsDropped: d("tinylb_events_dropped_total", "Events dropped because the event hook was too slow.", nil),
	}
}

// Describe implements [prometheus.Collector].
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{
		c.requests, c.failures, c.retries, c.active, c.up, c.state, c.weight, c.effWeight, c.backup,
		c.latency, c.latencyEWMA, c.lastCheckTime, c.lastCheckOK,
		c.unavailable, c.failed, c.panicMode, c.eventsDropped,
	} {
		ch <- d
	}
}

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// Collect implements [prometheus.Collector].
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	st := c.bal.Stats()
	counter := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, labels...)
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	for _, b := range st.Backends {
		counter(c.requests, float64(b.Requests), b.URL)
		counter(c.failures, float64(b.Failures), b.URL)
		counter(c.retries, float64(b.Retries), b.URL)
		gauge(c.active, float64(b.Active), b.URL)
		serving := b.State == lb.StateUp || b.State == lb.StateSlowStart || b.State == lb.StateProbing
		gauge(c.up, boolValue(serving), b.URL)
		for _, s := range allStates {
			gauge(c.state, boolValue(b.State == s), b.URL, s.String())
		}
		gauge(c.weight, float64(b.Weight), b.URL)
		gauge(c.effWeight, b.EffectiveWeight, b.URL)
		gauge(c.backup, boolValue(b.Backup), b.URL)

		// LatencyHistogram holds per-bucket counts, the last one above
		// every bound; Prometheus wants cumulative counts per upper bound.
		buckets := make(map[float64]uint64, len(lb.LatencyBuckets))
		var cum uint64
		for i, bound := range lb.LatencyBuckets {
			if i < len(b.LatencyHistogram) {
				cum += uint64(b.LatencyHistogram[i])
			}
			buckets[bound.Seconds()] = cum
		}
		if n := len(lb.LatencyBuckets); n < len(b.LatencyHistogram) {
			cum += uint64(b.LatencyHistogram[n])
		}
		sum := b.LatencySum.Seconds()
		ch <- prometheus.MustNewConstHistogram(c.latency, cum, sum, buckets, b.URL)
		gauge(c.latencyEWMA, b.LatencyEWMA.Seconds(), b.URL)

		if !b.LastCheck.IsZero() {
			gauge(c.lastCheckTime, float64(b.LastCheck.UnixNano())/1e9, b.URL)
			gauge(c.lastCheckOK, boolValue(b.LastCheckError == ""), b.URL)
		}
	}
	counter(c.unavailable, float64(st.Unavailable))
	counter(c.failed, float64(st.Failed))
	gauge(c.panicMode, boolValue(st.Panic))
	counter(c.eventsDropped, float64(st.EventsDropped))
}
