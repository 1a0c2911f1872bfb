// Package faultkit is the in-process fault kit of tinylb's reliability
// suite: listeners, connections and dialers that misbehave on purpose
// (modelled on toxiproxy's toxics), instrumented backends that let a test
// check every byte and count every request, and a load client that judges
// each response instead of only counting them.
//
// Everything here works on loopback only and uses the standard library
// only. It is test support: it favours exact bookkeeping over speed.
//
// The pieces:
//
//   - [Listener] wraps a net.Listener and applies a [Fault] to the
//     connections it accepts: accept then close, accept then reset
//     (SO_LINGER 0), accept and hang, read N bytes then reset, half-close,
//     and per-connection toxics (read/write latency, small writes, reset or
//     stall after N bytes written).
//   - [Dialer] is an http.Transport DialContext hook that refuses or times
//     out dials to chosen addresses, records every dial target (the
//     evidence that only pool members are dialed) and refuses anything
//     outside loopback.
//   - [Backend] is an HTTP server on 127.0.0.1 that echoes X-Req-ID, names
//     itself in X-Backend, returns the SHA-256 of the request body in
//     X-Body-Sha256, answers with a body generated from the request ID
//     ([Body]), counts requests per ID and connections per state, can be
//     killed and restarted on the same address, and misbehaves on demand
//     ([Behavior]).
//   - [Client] sends requests, records every attempt ([Attempt]) and finds
//     breaches of integrity (I1) and at-most-once delivery (I2).
package faultkit
