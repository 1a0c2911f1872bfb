// Package reliability is tinylb's reliability and security suite: the
// scenarios of the reliability plan (load L, faults F, bad input B,
// security S, resource hygiene R), each test named after its scenario id,
// and the fuzz targets of the suite. It holds tests only.
//
// By default every scenario runs at reduced scale (bounded loops, loopback
// only). Full scale:
//
//	go test -race -tags soak -timeout 60m ./internal/reliability/
//	go test -timeout 60m ./internal/reliability/ -soak
package reliability

import (
	"flag"
	"testing"

	"go.uber.org/goleak"
)

var soakFlag = flag.Bool("soak", false, "run the load and soak scenarios at full scale")

// soak reports whether scenarios run at full scale: with the soak build
// tag or the -soak flag.
func soak() bool { return soakTag || *soakFlag }

// scale returns reduced normally and full in soak runs.
func scale[T any](reduced, full T) T {
	if soak() {
		return full
	}
	return reduced
}

// TestMain fails the run if any goroutine outlives the tests (R1): every
// balancer, backend, front server and client is closed by its test.
//
// One stdlib goroutine is let go: after answering a request it rejects
// (400, 431), net/http's server lingers up to 500 ms on the connection
// (closeWriteAndWait, to avoid a TCP reset racing the answer) even when
// the server is closed. It belongs to the test's front server, ends by
// itself, and is not the balancer's.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreAnyFunction("net/http.(*conn).closeWriteAndWait"))
}
