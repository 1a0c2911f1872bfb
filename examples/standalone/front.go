package main

import "net/http"

// refuseH2Preface answers 505 to the HTTP/2 connection preface read as an
// HTTP/1 request ("PRI * HTTP/2.0"), which net/http passes to the handler
// on a listener without h2c: a client that assumed h2c must not reach the
// balancer, whose attempt to forward it would fail and count against a
// backend. Every other request goes to next.
func refuseH2Preface(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == "PRI" && r.ProtoMajor == 2 {
			w.Header().Set("Connection", "close")
			http.Error(w, "HTTP/2 without TLS (h2c) is off on this listener", http.StatusHTTPVersionNotSupported)
			return
		}
		next.ServeHTTP(w, r)
	})
}
