// Package bench holds tinylb's performance measurements, as tests only:
//
//   - serve_test.go: ServeHTTP of a Balancer against a bare
//     httputil.ReverseProxy over the same in-memory RoundTripper
//     (go test -run '^$' -bench . -benchmem ./bench/);
//   - sim/ and cmd/sim: a deterministic discrete-event simulation of
//     balancing quality that drives the real strategy pickers;
//   - cmd/plot: the SVG plots in docs/;
//   - wrk.sh: the shared wrk harness with tinylb next to its peers.
//
// See BENCHMARKS.md at the root of the module for the results.
package bench
