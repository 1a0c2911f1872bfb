package lb

import (
	"context"
	"io"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/tinylb/lb/health"
	"github.com/tinylb/lb/strategy"
)

// pick asks the snapshot's picker for a backend. A backend whose next
// request is a probe after an ejection takes one request at a time; a pick
// of it while its probe is out is undone and another backend is chosen.
func (b *Balancer) pick(s *snapshot, r *http.Request, tried **strategy.Tried) (int, bool) {
	for {
		i := s.picker.Pick(r, *tried)
		if i < 0 || i >= len(s.backends) {
			return -1, false
		}
		if s.gated == nil || !s.gated[i] {
			return i, false
		}
		be := s.backends[i]
		if be.probeTaken.CompareAndSwap(false, true) {
			return i, true
		}
		if s.observer != nil {
			s.observer.Done(i, strategy.Ignored)
		}
		if *tried == nil {
			*tried = new(strategy.Tried)
		}
		(*tried).Add(be)
	}
}

// attempt is the bookkeeping of one try on one backend, settled exactly
// once by finish.
type attempt struct {
	b       *Balancer
	s       *snapshot
	i       int
	gated   bool
	noDone  bool // a sticky request the picker was not told of: no Done (see package pinned)
	ctx     context.Context
	start   time.Time
	due     time.Time     // the gRPC call's deadline (grpc-timeout); zero: none
	latency time.Duration // to response headers, or to the error
	status  int
}

// finish settles the attempt: the in-flight count, passive health, the
// strategy's feedback, a probe's verdict.
func (a *attempt) finish(status int, err error, canceled bool) {
	b, s, i := a.b, a.s, a.i
	if err != nil && a.pastDue() {
		canceled = true // the call ran out of its own time: not the backend's doing
	}
	be := s.backends[i]
	be.release()
	res := strategy.Success
	var ejectUntil, now time.Time
	if tr := s.trackers[i]; tr != nil {
		now = b.now()
		var failed bool
		failed, ejectUntil = tr.Observe(health.Outcome{
			Time: now, Err: err, Status: status, Latency: now.Sub(a.start), Canceled: canceled,
		})
		if failed {
			res = strategy.Failure
		}
	} else if err != nil {
		res = strategy.Failure
	}
	if canceled {
		res, ejectUntil = strategy.Ignored, time.Time{}
	}
	if res == strategy.Failure {
		be.stats.failures.Add(1)
	}
	if s.windows != nil && res != strategy.Ignored && b.load.measured {
		s.windows[i].Observe(a.latency, res == strategy.Failure, b.now())
	}
	switch {
	case a.noDone:
	case s.latency != nil:
		if now.IsZero() {
			now = b.now()
		}
		s.latency.DoneAfter(i, res, now.Sub(a.start))
	case s.observer != nil:
		s.observer.Done(i, res)
	}
	if b.events != nil {
		b.emit(Event{Kind: EventAttemptDone, Time: b.now(), Backend: be, Status: status, Err: err,
			Latency: a.latency, Failed: res == strategy.Failure})
	}
	if a.gated {
		b.probeDone(be, res)
		return
	}
	if !ejectUntil.IsZero() && len(s.backends) > 1 {
		b.eject(be, ejectUntil, "passive health: too many failed requests")
	}
}

// pastDue reports whether the gRPC call's deadline has come.
func (a *attempt) pastDue() bool {
	return !a.due.IsZero() && !a.b.now().Before(a.due)
}

// wrap returns rc wrapped so that the attempt is settled when the body is
// closed: a streamed or upgraded response counts as in flight until then.
// spare, if not nil, is an unused trackedBody to fill instead of a new one.
// fail, if not nil, is the failure the response stands for though it came
// back whole: a gRPC backend's Trailers-Only UNAVAILABLE (see grpcFailure).
// It is kept as the body's read error, so that the attempt costs no more
// memory for it.
func (a *attempt) wrap(rc io.ReadCloser, spare *trackedBody, fail error) io.ReadCloser {
	tb := spare
	if tb == nil {
		tb = new(trackedBody)
	}
	tb.rc, tb.a = rc, *a
	if fail != nil {
		tb.noteErr(fail)
	}
	if rwc, ok := rc.(io.ReadWriteCloser); ok && a.status == http.StatusSwitchingProtocols {
		return &trackedConn{trackedBody: tb, w: rwc}
	}
	return tb
}

// trackedBody is a response body that settles its attempt on Close, as a
// failure if reading it failed (the backend died mid-response) or if the
// response itself was one (wrap's fail).
type trackedBody struct {
	rc      io.ReadCloser
	a       attempt
	readErr atomic.Pointer[error] // the first read error, or wrap's fail
	done    atomic.Bool
}

func (t *trackedBody) Read(p []byte) (int, error) {
	n, err := t.rc.Read(p)
	if err != nil && err != io.EOF {
		t.noteErr(err)
	}
	return n, err
}

// noteErr keeps the first read error. It is a function of its own so that
// Read's err does not escape and allocate on every call.
func (t *trackedBody) noteErr(err error) {
	t.readErr.CompareAndSwap(nil, &err)
}

func (t *trackedBody) Close() error {
	err := t.rc.Close()
	if t.done.CompareAndSwap(false, true) {
		var rerr error
		if p := t.readErr.Load(); p != nil {
			rerr = *p
		}
		canceled := rerr != nil && t.a.ctx.Err() != nil
		t.a.finish(t.a.status, rerr, canceled)
	}
	return err
}
