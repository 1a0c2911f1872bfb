package health

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/tinylb/lb/internal/grpctimeout"
)

// GRPCCheck is a [Checker] for gRPC backends. It calls the standard gRPC
// health service, grpc.health.v1.Health/Check, on the target, and passes
// when the answer is SERVING. It fails on NOT_SERVING, SERVICE_UNKNOWN or
// UNKNOWN, on any grpc-status other than OK (UNIMPLEMENTED from a server
// without a health service, NOT_FOUND for a Service it does not know), on
// an answer that is not a well-formed gRPC response, and on a timeout,
// each with an error that says which. The zero value checks the health of
// the server as a whole on the default [Schedule].
//
// An [HTTPCheck] cannot check a gRPC server: gRPC speaks HTTP/2 only, so
// over HTTP/1.1 a client reads the server's SETTINGS frame as a malformed
// response, and a plain GET over HTTP/2 gets 415 (the content type is not
// application/grpc). GRPCCheck sends the call over HTTP/2 itself: with
// prior knowledge, unencrypted (h2c), to http:// targets, as gRPC's
// plaintext transport does; over TLS, with ALPN "h2", to https:// ones. It
// encodes the request and decodes the response by hand, so the package
// needs neither grpc-go nor protobuf.
//
// Unlike HTTPCheck, which opens a connection per check, GRPCCheck keeps
// its connection to each target open from one check to the next, as a
// gRPC client does: an HTTP/2 connection carries any number of calls, and
// dialling (and a TLS handshake) per check would cost more than the check.
// Unless Transport is set, checks use a transport of the package's, never
// the connections that real requests use. A connection that no check used
// for 2·Interval+Timeout (longer than any gap between two checks of one
// target) closes itself, so once a balancer's checks stop their
// connections go too; [GRPCCheck.CloseIdleConnections] closes them at once.
//
// A GRPCCheck holds no state of its own: it works as a value or as a
// pointer, and a copy checks as the original does, sharing its
// connections. It is safe for concurrent use by many targets; its fields
// must not change while it is in use.
type GRPCCheck struct {
	// Service is the name sent in HealthCheckRequest.service: the service
	// whose health is asked, as the server registered it (say
	// "helloworld.Greeter"). Default "": the server as a whole, which
	// grpc-go's health server reports SERVING until told otherwise.
	Service string
	// Authority overrides the :authority (the host) of the call. Default:
	// the host of the target.
	Authority string
	// Header holds extra request metadata, such as "Authorization".
	// [GRPCCheck.Validate] refuses the names the check sets itself
	// ("Grpc-*", Content-Type, Te, and Host: use Authority) and those
	// HTTP/2 forbids (Connection and its kin). Default none.
	Header http.Header

	// Interval, Timeout, Rise, Fall, Jitter and StartDown make the
	// [Schedule] that [GRPCCheck.Schedule] returns; zero means the
	// Schedule's default. Check itself applies Timeout too, and sends it
	// to the server as grpc-timeout.
	Interval  time.Duration
	Timeout   time.Duration
	Rise      int
	Fall      int
	Jitter    float64
	StartDown bool

	// Transport sends the calls. Default: an [http.Transport] of the
	// package's, shared by the GRPCChecks of the same Interval and
	// Timeout, that speaks HTTP/2 only (h2c to http:// targets, h2 over TLS
	// with the system's roots to https:// ones), with no proxy and dial and
	// TLS handshake timeouts of Timeout. A Transport given here is used as
	// it is and must speak HTTP/2 to the targets (for http:// ones, an
	// http.Transport whose Protocols has only UnencryptedHTTP2); its owner
	// closes its connections.
	Transport http.RoundTripper
}

var _ interface {
	Checker
	Scheduler
} = GRPCCheck{}

// Schedule returns the [Schedule] made of c's Interval, Timeout, Rise,
// Fall, Jitter and StartDown fields.
func (c GRPCCheck) Schedule() Schedule {
	return Schedule{
		Interval:  c.Interval,
		Timeout:   c.Timeout,
		Rise:      c.Rise,
		Fall:      c.Fall,
		Jitter:    c.Jitter,
		StartDown: c.StartDown,
	}
}

// grpcReserved lists the request headers that a check sets itself or
// that HTTP/2 forbids (RFC 9113 §8.2.2), in canonical form. Every "Grpc-"
// header is refused too: PROTOCOL-HTTP2.md reserves names that start with
// "grpc-" for gRPC itself.
var grpcReserved = []string{
	"Host", "Content-Type", "Content-Length", "Te",
	"Connection", "Keep-Alive", "Proxy-Connection", "Transfer-Encoding", "Upgrade",
}

// Validate reports the first impossible setting of c, naming its field: a
// Service that is not valid UTF-8 (a protobuf string must be, and servers
// refuse the request otherwise), an Authority with spaces, controls or
// '/', a Header name that is not a token or that gRPC reserves, a Header
// value with CR, LF or NUL, or an invalid [GRPCCheck.Schedule]. The zero
// GRPCCheck is valid.
func (c GRPCCheck) Validate() error {
	switch {
	case !utf8.ValidString(c.Service):
		return fmt.Errorf("health: Service %q is not valid UTF-8", c.Service)
	case strings.ContainsFunc(c.Authority, func(r rune) bool { return r <= ' ' || r == 0x7f || r == '/' }):
		return fmt.Errorf("health: invalid Authority %q", c.Authority)
	}
	if err := validHeader(c.Header); err != nil {
		return err
	}
	for _, k := range slices.Sorted(maps.Keys(c.Header)) {
		ck := http.CanonicalHeaderKey(k)
		if strings.HasPrefix(ck, "Grpc-") || slices.Contains(grpcReserved, ck) {
			return fmt.Errorf("health: reserved Header %q: the check sets it, or HTTP/2 forbids it", k)
		}
	}
	return c.Schedule().Validate()
}

// Check calls grpc.health.v1.Health/Check on target for c.Service and
// reports why the target failed, or nil when it answered SERVING. It
// returns when the answer is judged, when Timeout has passed or when ctx
// ends, whichever comes first. The connection it used stays open for the
// next check. An invalid c fails every check with the error of
// [GRPCCheck.Validate].
func (c GRPCCheck) Check(ctx context.Context, target *url.URL) error {
	if err := c.Validate(); err != nil {
		return err
	}
	s := c.Schedule().WithDefaults()
	base, err := grpcBase(target)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, s.Timeout)
	defer cancel()
	where := fmt.Sprintf("health: grpc %s service %q", base, c.Service)

	req, err := c.request(ctx, base+grpcHealthPath)
	if err != nil {
		return fmt.Errorf("%s: %w", where, err)
	}
	rt := c.Transport
	if rt == nil {
		rt = grpcTransport(s)
	}
	resp, err := rt.RoundTrip(req)
	if err == nil {
		err = judgeGRPC(resp)
		resp.Body.Close()
	}
	switch {
	case err == nil:
		return nil
	case errors.Is(err, context.DeadlineExceeded) && ctx.Err() != nil:
		return fmt.Errorf("%s: no answer within the %v Timeout: %w", where, s.Timeout, err)
	default:
		return fmt.Errorf("%s: %w", where, err)
	}
}

// request builds the call: a POST of the length-prefixed request with the
// headers PROTOCOL-HTTP2.md requires (content-type, te: trailers) and
// grpc-timeout from ctx's deadline, so that the server gives up when the
// check does.
func (c GRPCCheck) request(ctx context.Context, u string) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(grpcRequest(c.Service)))
	if err != nil {
		return nil, err
	}
	for k, v := range c.Header {
		req.Header[k] = slices.Clone(v)
	}
	req.Header.Set("Content-Type", "application/grpc")
	req.Header.Set("Te", "trailers")
	if dl, ok := ctx.Deadline(); ok {
		req.Header.Set("Grpc-Timeout", grpctimeout.Format(time.Until(dl)))
	}
	if c.Authority != "" {
		req.Host = c.Authority
	}
	return req, nil
}

// grpcBase returns the scheme, host and path of target, without a final
// '/': where the call goes, with the method's path after it, as the
// balancer joins request paths to a backend's.
func grpcBase(target *url.URL) (string, error) {
	scheme := target.Scheme
	switch scheme {
	case "":
		scheme = "http"
	case "http", "https":
	default:
		return "", fmt.Errorf("health: grpc: target %q: scheme %q is neither http (h2c) nor https (h2)", target.Redacted(), scheme)
	}
	if target.Host == "" {
		return "", fmt.Errorf("health: grpc: target %q has no host", target.Redacted())
	}
	return scheme + "://" + target.Host + strings.TrimSuffix(target.EscapedPath(), "/"), nil
}

// judgeGRPC reads resp to its end and reports why it is not a SERVING
// answer, or nil. Its order follows PROTOCOL-HTTP2.md: a response that is
// not HTTP/2, not 200 or not application/grpc is no gRPC answer; a
// Trailers-Only response (grpc-status in the headers, no body) carries a
// status and no message; otherwise the message comes first and the status
// in the trailers, which decides before the message does.
func judgeGRPC(resp *http.Response) error {
	if resp.ProtoMajor != 2 {
		return fmt.Errorf("answered over %s; gRPC needs HTTP/2", resp.Proto)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("HTTP status %d, not a gRPC response", resp.StatusCode)
	}
	if ct := resp.Header.Get("Content-Type"); !isGRPCContentType(ct) {
		return fmt.Errorf("content-type %q, not a gRPC response", ct)
	}
	if _, ok := resp.Header["Grpc-Status"]; ok { // Trailers-Only
		if err := grpcStatus(resp.Header); err != nil {
			return err
		}
		return errors.New("grpc-status OK without a response message")
	}
	msg, err := readGRPCMessage(resp.Body, grpcMaxResponse)
	if err != nil && !errors.Is(err, errNoMessage) {
		return fmt.Errorf("reading the response: %w", err)
	}
	if err := grpcStatus(resp.Trailer); err != nil {
		return err
	}
	if msg == nil {
		return errors.New("grpc-status OK without a response message")
	}
	status, err := decodeHealthResponse(msg)
	if err != nil {
		return err
	}
	if status != statusServing {
		return fmt.Errorf("serving status %v", status)
	}
	return nil
}

// isGRPCContentType reports whether ct is application/grpc, possibly with
// a "+format" or parameters, as grpc-go accepts it.
func isGRPCContentType(ct string) bool {
	ct = strings.ToLower(ct)
	rest, ok := strings.CutPrefix(ct, "application/grpc")
	return ok && (rest == "" || rest[0] == '+' || rest[0] == ';')
}

// grpcStatus reports the grpc-status in h as an error with its name and
// grpc-message, nil for OK, or an error when h has none.
func grpcStatus(h http.Header) error {
	v := h.Get("Grpc-Status")
	if v == "" {
		return errors.New("no grpc-status in the response")
	}
	code, err := strconv.ParseUint(v, 10, 32)
	if err != nil {
		return fmt.Errorf("invalid grpc-status %q", v)
	}
	if code == 0 {
		return nil
	}
	msg := grpcMessage(h.Get("Grpc-Message"))
	if msg == "" {
		return fmt.Errorf("grpc-status %s", grpcCodeLabel(code))
	}
	return fmt.Errorf("grpc-status %s: %q", grpcCodeLabel(code), msg)
}

// grpcMessageMax bounds the grpc-message an error quotes: it ends up in
// logs and on the status page.
const grpcMessageMax = 256

// grpcMessage decodes a grpc-message: percent-encoded UTF-8, in which a
// '%' that does not start two hex digits stands for itself
// (PROTOCOL-HTTP2.md, "Status-Message"). It keeps the first grpcMessageMax
// bytes, cut at a rune boundary.
func grpcMessage(v string) string {
	var b strings.Builder
	i := 0
	for ; i < len(v) && b.Len() < grpcMessageMax; i++ {
		if v[i] == '%' && i+2 < len(v) {
			hi, ok1 := unhex(v[i+1])
			lo, ok2 := unhex(v[i+2])
			if ok1 && ok2 {
				b.WriteByte(hi<<4 | lo)
				i += 2
				continue
			}
		}
		b.WriteByte(v[i])
	}
	if i < len(v) { // cut short
		return strings.ToValidUTF8(b.String(), "") + "…"
	}
	return b.String()
}

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// CloseIdleConnections closes the connections that the checks of c, and
// of every GRPCCheck with its Interval and Timeout (which share them),
// keep open between checks. A connection that carries a check at the time
// is left to close itself once idle. It does not touch c.Transport, which
// its owner closes.
//
// Call it once the checks have stopped (after the balancer's Close, or
// when [Run] has returned) to release the connections at once rather than
// after 2·Interval+Timeout, say before a leak check in tests. Checks made
// afterwards dial again.
func (c GRPCCheck) CloseIdleConnections() {
	key := grpcKey(c.Schedule().WithDefaults())
	ct := &grpcTransports
	ct.mu.Lock()
	tr := ct.m[key]
	ct.mu.Unlock()
	if tr != nil {
		tr.CloseIdleConnections()
	}
}

// grpcTransportKey picks the default transport of a GRPCCheck: its dial
// timeout and its idle timeout.
type grpcTransportKey struct {
	timeout, idle time.Duration
}

// grpcKey returns the transport key of checks on schedule s, which has its
// defaults. A connection stays idle, between the end of one check and the
// start of the next, less than 2·Interval (Jitter is less than 1); the
// idle timeout leaves Timeout on top of that, so that connections are
// kept while checks go on and close soon after they stop.
func grpcKey(s Schedule) grpcTransportKey {
	return grpcTransportKey{timeout: s.Timeout, idle: 2*s.Interval + s.Timeout}
}

// grpcTransports holds the default transports of GRPCChecks, one per
// transport key; a program has few distinct schedules. An idle transport
// holds no goroutine: each open connection holds one, until it closes
// itself after the idle timeout.
var grpcTransports struct {
	mu sync.Mutex // protects m
	m  map[grpcTransportKey]*http.Transport
}

// grpcTransport returns the default transport of checks on schedule s.
// Like HTTPCheck's, its dial and TLS handshake have timeouts of their own,
// since net/http dials apart from the request's context. Its HTTP/2
// connections send no keep-alive pings (HTTP2Config.SendPingTimeout is
// off): by default a grpc-go server counts as a strike a ping that comes
// sooner than 5 minutes after the last one (keepalive.EnforcementPolicy's
// MinTime), or than 2 hours with no call in flight, and closes the
// connection with "too_many_pings" at the third (internal/transport,
// handlePing). Each check finds out for itself whether the server answers.
func grpcTransport(s Schedule) *http.Transport {
	key := grpcKey(s)
	ct := &grpcTransports
	ct.mu.Lock()
	defer ct.mu.Unlock()
	if tr := ct.m[key]; tr != nil {
		return tr
	}
	var protocols http.Protocols
	protocols.SetHTTP2(true)            // https: h2 by ALPN
	protocols.SetUnencryptedHTTP2(true) // http: h2c with prior knowledge, as HTTP1 is off
	tr := &http.Transport{
		Proxy:                  nil,
		DialContext:            (&net.Dialer{Timeout: s.Timeout}).DialContext,
		TLSHandshakeTimeout:    s.Timeout,
		IdleConnTimeout:        key.idle,
		DisableCompression:     true,
		MaxResponseHeaderBytes: 64 << 10, // a health answer's headers are small
		Protocols:              &protocols,
	}
	if ct.m == nil {
		ct.m = make(map[grpcTransportKey]*http.Transport)
	}
	ct.m[key] = tr
	return tr
}
