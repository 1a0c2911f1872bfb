package lb

import (
	"fmt"
	"net/http"
	"time"
)

// RetryPolicy says when a failed attempt is tried again on another backend.
// The zero value means the defaults named beside each field. Whatever the
// policy, an attempt is retried only on a backend the request has not been
// sent to, never once a byte of the response went to the client, and never
// after the client went away.
//
// A gRPC call (a POST with content-type application/grpc...) is retried
// by the same rules, which are gRPC's own (gRFC A6): one whose connection
// could not be made is retried whatever the policy, like A6's transparent
// retry (here it counts toward Tries); one that was sent, only with
// NonIdempotent and a kept body (PROTOCOL-HTTP2.md: calls are "not assumed
// to be idempotent"); and none once the backend sent Response-Headers, which
// commit the call (A6). A backend's Trailers-Only answer with grpc-status 14
// UNAVAILABLE does not commit it: it is a failed attempt, retried like one
// that failed after it was sent, and the client gets it if no retry does
// better. Any grpc-status in trailers after a body is the application's
// answer, never retried. A call that RetryPolicy.Timeout stops retrying
// gets 4 DEADLINE_EXCEEDED.
type RetryPolicy struct {
	// Tries is the most attempts one request may make, the first included.
	// Default 3; 1 turns retries off. Never more than the number of
	// backends that could take the request.
	Tries int
	// Timeout bounds the time from the first attempt's start after which no
	// new attempt starts. Zero means no bound.
	Timeout time.Duration
	// Statuses lists upstream response statuses that count as a failed
	// attempt to retry (for example 502, 503, 504); only 5xx statuses and
	// 429 are accepted. They are retried only for idempotent requests
	// whose body can be replayed; when the tries run out, the client gets
	// the last response. Default: none, as with nginx's
	// proxy_next_upstream "error timeout".
	Statuses []int
	// NonIdempotent lets requests with non-idempotent methods (POST, PATCH,
	// ...) be retried after they were sent, like nginx's "non_idempotent",
	// and gRPC calls after a Trailers-Only UNAVAILABLE. Off by default:
	// such a request is retried only when no byte of it reached a backend
	// (the connection could not be made).
	NonIdempotent bool
	// BodyBuffer is how many bytes of a request body are kept so that the
	// body can be sent again on a retry. A larger body is streamed and its
	// request is not retried once sent; so is one that finds no room in
	// the balancer's body memory ([WithBodyMemory]). Default 1 MiB;
	// negative keeps nothing.
	BodyBuffer int64
	// Budget caps retries in a wide outage, like Envoy's retry budget and
	// Finagle's: at most Budget × the requests in flight may be retrying
	// at once (and always at least MinRetries); a request that would go
	// over gets its failure instead of another try. 0.2 is Envoy's value.
	// Zero (the default) means no budget: only Tries bounds retries.
	Budget float64
	// MinRetries is how many requests may always be retrying at once under
	// a Budget, however few are in flight. Default 3.
	MinRetries int
}

func (p RetryPolicy) withDefaults() RetryPolicy {
	if p.Tries == 0 {
		p.Tries = 3
	}
	if p.BodyBuffer == 0 {
		p.BodyBuffer = 1 << 20
	}
	if p.BodyBuffer < 0 {
		p.BodyBuffer = 0
	}
	if p.MinRetries == 0 {
		p.MinRetries = 3
	}
	return p
}

// retryableStatus reports whether an answer with status s may be worth
// sending elsewhere: a server error, or 429 Too Many Requests from a busy
// backend. Any other status is the request's own answer, and retrying it
// would resend, for example, every successful GET.
func retryableStatus(s int) bool {
	return s == http.StatusTooManyRequests || 500 <= s && s <= 599
}

// Validate reports what is wrong with p.
func (p RetryPolicy) Validate() error {
	if p.Tries < 0 {
		return fmt.Errorf("lb: RetryPolicy.Tries %d: must not be negative", p.Tries)
	}
	if p.Timeout < 0 {
		return fmt.Errorf("lb: RetryPolicy.Timeout %v: must not be negative", p.Timeout)
	}
	if p.Budget < 0 || p.Budget > 1 || p.Budget != p.Budget {
		return fmt.Errorf("lb: RetryPolicy.Budget %v: must be between 0 and 1", p.Budget)
	}
	if p.MinRetries < 0 {
		return fmt.Errorf("lb: RetryPolicy.MinRetries %d: must not be negative", p.MinRetries)
	}
	for _, s := range p.Statuses {
		if !retryableStatus(s) {
			return fmt.Errorf("lb: RetryPolicy.Statuses: %d is not a status to retry (want 5xx or 429)", s)
		}
	}
	return nil
}
