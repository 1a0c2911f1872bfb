package reliability

import (
	"fmt"
	"strings"
)

// smugglePayload is a malformed or ambiguous request over raw TCP. Each is
// built so that the correct reading keeps "/smuggled" inside a body (or
// rejects the request), while a reader that picked the other framing would
// see a request for /smuggled: any arrival at /smuggled is a desync.
type smugglePayload struct {
	name string
	raw  string
}

// smuggledReq is the request hidden in each payload.
const smuggledReq = "GET /smuggled HTTP/1.1\r\nHost: x\r\nX-Req-Id: smuggled\r\n\r\n"

func chunk(s string) string { return fmt.Sprintf("%x\r\n%s\r\n", len(s), s) }

func smugglePayloads() []smugglePayload {
	hidden := chunk(smuggledReq) + "0\r\n\r\n"
	post := func(headers string, body string) string {
		return "POST /victim HTTP/1.1\r\nHost: x\r\nX-Req-Id: attacker\r\n" + headers + "\r\n" + body
	}
	return []smugglePayload{
		// CL.TE: a reader using Content-Length stops after the chunk size
		// line and reads the hidden request next.
		{"CL+TE", post("Content-Length: 4\r\nTransfer-Encoding: chunked\r\n", hidden)},
		// TE.CL: the other order of the same two headers.
		{"TE+CL", post("Transfer-Encoding: chunked\r\nContent-Length: 4\r\n", hidden)},
		// Two different Content-Lengths: 0 would expose the hidden request.
		{"double CL", post(fmt.Sprintf("Content-Length: %d\r\nContent-Length: 0\r\n", len(smuggledReq)), smuggledReq)},
		{"double CL list", post(fmt.Sprintf("Content-Length: %d, 0\r\n", len(smuggledReq)), smuggledReq)},
		// Obfuscated Transfer-Encodings that a lenient reader takes as
		// chunked while the length says otherwise.
		{"TE chunked,chunked", post(fmt.Sprintf("Transfer-Encoding: chunked, chunked\r\nContent-Length: %d\r\n", len(hidden)), hidden)},
		{"TE gzip,chunked", post(fmt.Sprintf("Transfer-Encoding: gzip, chunked\r\nContent-Length: %d\r\n", len(hidden)), hidden)},
		{"TE twice", post("Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n", hidden)},
		{"TE xchunked", post("Transfer-Encoding: xchunked\r\nContent-Length: 4\r\n", hidden)},
		{"TE space before colon", post("Transfer-Encoding : chunked\r\nContent-Length: 4\r\n", hidden)},
		{"CL space before colon", post("Content-Length : 0\r\nTransfer-Encoding: chunked\r\n", hidden)},
		{"TE obs-fold", post("Transfer-Encoding:\r\n chunked\r\nContent-Length: 4\r\n", hidden)},
		{"TE tab value", post("Transfer-Encoding:\tchunked\r\nContent-Length: 4\r\n", hidden)},
		// CVE-2025-22871: a bare LF ends the chunk size line.
		{"bare LF chunk size", post("Transfer-Encoding: chunked\r\n", fmt.Sprintf("%x\n%s\r\n0\r\n\r\n", len(smuggledReq), smuggledReq))},
		{"chunk extension LF", post("Transfer-Encoding: chunked\r\n", fmt.Sprintf("%x;x\n%s\r\n0\r\n\r\n", len(smuggledReq), smuggledReq))},
		{"chunk size overflow", post("Transfer-Encoding: chunked\r\n", "10000000000000000\r\n"+smuggledReq+"\r\n0\r\n\r\n")},
		// Control characters in header lines.
		{"CR in header", post("X-Evil: a\rTransfer-Encoding: chunked\r\nContent-Length: 4\r\n", hidden)},
		{"NUL in header", post("X-Evil: a\x00b\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n", hidden)},
		{"LF-only header lines", strings.ReplaceAll(post("Content-Length: 4\r\nTransfer-Encoding: chunked\r\n", ""), "\r\n", "\n") + hidden},
		// A negative and a signed length.
		{"negative CL", post("Content-Length: -1\r\n", smuggledReq)},
		{"signed CL", post("Content-Length: +0\r\n", smuggledReq)},
		// Pipelined requests with mixed framing: the second one's body is
		// the hidden request.
		{"pipelined mixed framing", "GET /victim HTTP/1.1\r\nHost: x\r\nX-Req-Id: p1\r\n\r\n" +
			post("Transfer-Encoding: chunked\r\n", hidden) +
			post(fmt.Sprintf("Content-Length: %d\r\n", len(smuggledReq)), smuggledReq)},
		// HTTP/1.0 with Transfer-Encoding (ignored, so CL applies).
		{"HTTP/1.0 TE", strings.Replace(post(fmt.Sprintf("Transfer-Encoding: chunked\r\nContent-Length: %d\r\n", len(hidden)), hidden), "HTTP/1.1", "HTTP/1.0", 1)},
	}
}
