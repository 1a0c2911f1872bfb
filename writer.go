package lb

import (
	"net/http"
	"sync"
)

// max1xx is how many informational (1xx) responses a request may relay to
// the client, net/http's own limit for what a client reads.
const max1xx = 5

// interimWriter is the ResponseWriter the ReverseProxy writes to. It guards
// informational responses, which ReverseProxy relays as they are: it strips
// their hop-by-hop headers (golang/go#81319) and drops those past max1xx, so
// that a backend cannot flood a client with them, and a backend's 100
// Continue, which the server sends itself. Everything else passes
// through; Unwrap keeps flushing and hijacking working.
type interimWriter struct {
	http.ResponseWriter
	n1xx int
}

var interimWriters = sync.Pool{New: func() any { return new(interimWriter) }}

func (w *interimWriter) WriteHeader(code int) {
	if code == http.StatusContinue {
		return // the server sends its own (see relayTrace.got1xx)
	}
	if code >= 100 && code <= 199 && code != http.StatusSwitchingProtocols {
		h := w.ResponseWriter.Header()
		w.n1xx++
		if w.n1xx > max1xx {
			return // ReverseProxy clears the header map after us
		}
		stripHopByHop(h)
	}
	w.ResponseWriter.WriteHeader(code)
}

// Unwrap lets http.ResponseController reach the server's writer.
func (w *interimWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Flush is here for code that asserts http.Flusher instead of using a
// ResponseController.
func (w *interimWriter) Flush() {
	_ = http.NewResponseController(w.ResponseWriter).Flush()
}
