package strategy

import (
	"fmt"
	"hash/crc32"
	"net/http"
	"strconv"
	"testing"
)

// TestServerString checks how a member's Key becomes the server string its
// ring points derive from.
func TestServerString(t *testing.T) {
	tests := []struct{ key, want string }{
		{"http://10.0.0.1:80", "10.0.0.1:80"},
		{"http://backend.example.com", "backend.example.com"},
		{"https://backend.example.com:8080/", "backend.example.com:8080"},
		{"http://10.0.0.1:80/api", "10.0.0.1:80/api"},
		{"http://10.0.0.1:80/api/", "10.0.0.1:80/api/"},
		{"http://10.0.0.1:80/a%2Fb", "10.0.0.1:80/a%2Fb"},
		{"http://user:pw@h:1/?q=1#f", "h:1"},
		{"http://[::1]:8080", "[::1]:8080"},
		{"unix:/tmp/x", "unix:/tmp/x"},
		{"10.0.0.1:80", "10.0.0.1:80"}, // not a URL: used as is
	}
	for _, tt := range tests {
		if got := serverString(tt.key); got != tt.want {
			t.Errorf("serverString(%q) = %q; want %q", tt.key, got, tt.want)
		}
	}
}

// TestSplitServer checks nginx's split of a server string into host and
// port (§4.2).
func TestSplitServer(t *testing.T) {
	tests := []struct{ s, host, port string }{
		{"10.0.0.1:80", "10.0.0.1", "80"},
		{"backend.example.com", "backend.example.com", ""},
		{"backend.example.com:", "backend.example.com", ""},
		{"[::1]:8080", "[::1]", "8080"},
		{"[::1]", "[::1]", ""},
		{"10.0.0.1:80/api", "10.0.0.1:80/api", ""},
		{"unix:/tmp/x", "/tmp/x", ""},
		{"UNIX:/tmp/x:80", "/tmp/x:80", ""},
		{"8080", "8080", ""},
		{"", "", ""},
	}
	for _, tt := range tests {
		if host, port := splitServer(tt.s); host != tt.host || port != tt.port {
			t.Errorf("splitServer(%q) = %q, %q; want %q, %q", tt.s, host, port, tt.host, tt.port)
		}
	}
}

// TestKetamaPoints checks the §4.2 "first three points" vectors, from URL
// keys as a balancer gives them.
func TestKetamaPoints(t *testing.T) {
	tests := []struct {
		key  string
		want string
	}{
		{"http://10.0.0.1:80", "[a2ad5d56 0bdeb0ab 75f00c5b]"},
		{"http://10.0.0.2:80", "[2c225ab5 f2cf65b8 a5296dba]"},
		{"http://backend.example.com:8080", "[0970f950 2e8b7fff 8c799c83]"},
		{"https://backend.example.com", "[46127ded d9658b7d d5a2045f]"},
		{"unix:/tmp/x", "[5eb9dea5 1acf46aa b978e44d]"},
	}
	for _, tt := range tests {
		pts := ketamaPoints(nil, serverString(tt.key), 3)
		if got := fmt.Sprintf("%08x", pts); got != tt.want {
			t.Errorf("first points of %s = %s; want %s", tt.key, got, tt.want)
		}
	}
}

// TestConsistentHashRing3 checks the §4.2 table for the ring of
// 10.0.0.1:80, .2:80 and .3:80 at weight 1 (480 points): the point each key
// lands on, its server, where the key goes when that server is down, and how
// many points the walk skips.
func TestConsistentHashRing3(t *testing.T) {
	all := hostEndpoints(3)
	c := NewConsistentHash(headerKey)
	p := c.Picker(newSet(all, nil))
	r := p.(*hashPicker).ring
	if len(r.hashes) != 480 {
		t.Fatalf("ring has %d points; want 480", len(r.hashes))
	}
	tests := []struct {
		key     string
		crc     uint32
		idx     int
		point   uint32
		server  int
		down    int
		skipped int
	}{
		{"a", 0xe8b7be43, 438, 0xe8ec9eb1, 1, 0, 1},
		{"user42", 0x7c2fbeb6, 250, 0x7cb9c39b, 2, 0, 1},
		{"/index.html", 0xea224b42, 439, 0xea3af102, 0, 2, 1},
		{"192.168.1.10", 0x0f87d6b7, 33, 0x0fc1308f, 1, 0, 1},
		{"session-0001", 0x3eff4761, 124, 0x3f92a3d5, 2, 0, 5},
	}
	for _, tt := range tests {
		t.Run(tt.key, func(t *testing.T) {
			if h := keyCRC(tt.key); h != tt.crc || h != crc32.ChecksumIEEE([]byte(tt.key)) {
				t.Errorf("hashKey = %08x; want %08x", h, tt.crc)
			}
			j := 0
			for j < len(r.hashes) && r.hashes[j] < tt.crc {
				j++
			}
			if j != tt.idx || r.hashes[j] != tt.point {
				t.Errorf("point = %d (%08x); want %d (%08x)", j, r.hashes[j], tt.idx, tt.point)
			}
			if got := p.Pick(keyReq(tt.key), nil); got != tt.server {
				t.Errorf("server = %s; want %s", name(all, got), name(all, tt.server))
			}
			skipped := 0
			for r.owner[(j+skipped)%len(r.owner)] == int32(tt.server) {
				skipped++
			}
			if skipped != tt.skipped {
				t.Errorf("points skipped with %s down = %d; want %d", name(all, tt.server), skipped, tt.skipped)
			}
			down := c.Picker(newSet(all, without(3, tt.server)))
			if got := down.Pick(keyReq(tt.key), nil); got != tt.down {
				t.Errorf("with %s down: server = %s; want %s",
					name(all, tt.server), name(all, got), name(all, tt.down))
			}
			var tried Tried
			tried.Add(all[tt.server])
			if got := p.Pick(keyReq(tt.key), &tried); got != tt.down {
				t.Errorf("with %s tried: server = %s; want %s",
					name(all, tt.server), name(all, got), name(all, tt.down))
			}
		})
	}
}

// TestConsistentHashStable checks that a key stays on its member across
// picker rebuilds for health changes of other members, which reuse the
// ring, and that a weight change rebuilds it.
func TestConsistentHashStable(t *testing.T) {
	all := hostEndpoints(5)
	c := NewConsistentHash(headerKey)
	p0 := c.Picker(newSet(all, nil))
	want := make(map[string]int)
	for k := range 1000 {
		key := "user-" + strconv.Itoa(k)
		want[key] = p0.Pick(keyReq(key), nil)
	}
	for _, usable := range [][]int{nil, {0, 1, 2, 3}, {2}, {0, 4}, nil} {
		p := c.Picker(newSet(all, usable))
		if p.(*hashPicker).ring != p0.(*hashPicker).ring {
			t.Errorf("usable %v: ring rebuilt; want the previous one reused", usable)
		}
		ok := make(map[int]bool)
		for _, i := range newSet(all, usable).Usable {
			ok[i] = true
		}
		for key, i := range want {
			if got := p.Pick(keyReq(key), nil); ok[i] && got != i {
				t.Errorf("usable %v: key %s went to %s; want %s", usable, key, name(all, got), name(all, i))
			}
		}
	}
	heavier := hostEndpoints(5)
	heavier[3].(*testEP).w = 2
	p := c.Picker(newSet(heavier, nil))
	if r := p.(*hashPicker).ring; r == p0.(*hashPicker).ring || len(r.hashes) != 6*pointsPerWeight {
		t.Errorf("weight change: ring of %d points, reused %t; want a new ring of %d",
			len(r.hashes), r == p0.(*hashPicker).ring, 6*pointsPerWeight)
	}
	// Slow start (Weights) does not move points.
	slow := newSet(heavier, nil)
	slow.Weights[0] = 1
	slow.Scale = 4
	if c.Picker(slow).(*hashPicker).ring != p.(*hashPicker).ring {
		t.Errorf("Set.Weights change rebuilt the ring")
	}
}

// TestConsistentHashRemap checks over 10k keys that taking a member down,
// removing it or adding one moves only the keys of that member.
func TestConsistentHashRemap(t *testing.T) {
	all := hostEndpoints(11)
	ten := newSet(all[:10], nil)
	base := NewConsistentHash(headerKey).Picker(ten)
	tests := []struct {
		name   string
		set    *Set
		member int // the member whose keys may move
	}{
		{".4 down", newSet(all[:10], without(10, 3)), 3},
		{".4 removed", newSet([]Endpoint{all[0], all[1], all[2], all[4], all[5], all[6], all[7], all[8], all[9]}, nil), 3},
		{".10 removed", newSet(all[:9], nil), 9},
		{".11 added", newSet(all, nil), 10},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := NewConsistentHash(headerKey).Picker(tt.set)
			moved := 0
			for k := range 10_000 {
				r := keyReq("key-" + strconv.Itoa(k))
				before := all[base.Pick(r, nil)]
				after := tt.set.All[p.Pick(r, nil)]
				if before == after {
					continue
				}
				moved++
				if before != all[tt.member] && after != all[tt.member] {
					t.Fatalf("key-%d moved from %v to %v", k, before, after)
				}
			}
			if moved == 0 {
				t.Errorf("no key moved")
			}
			t.Logf("%d of 10000 keys moved", moved)
		})
	}
}

// TestConsistentHashAgree checks that two independent strategies over the
// same URLs, in different orders and with different Endpoint values, send
// every key to the same URL.
func TestConsistentHashAgree(t *testing.T) {
	a := hostEndpoints(7)
	b := hostEndpoints(7)
	b[0], b[6], b[2], b[3] = b[6], b[0], b[3], b[2]
	pa := NewConsistentHash(headerKey).Picker(newSet(a, nil))
	pb := NewConsistentHash(headerKey).Picker(newSet(b, nil))
	for k := range 10_000 {
		r := keyReq("key-" + strconv.Itoa(k))
		if ka, kb := a[pa.Pick(r, nil)].Key(), b[pb.Pick(r, nil)].Key(); ka != kb {
			t.Fatalf("key-%d: %s and %s", k, ka, kb)
		}
	}
}

// TestConsistentHashSameAddress checks members that share an address:
// different base paths get rings of their own, and identical server
// strings (here http and https) share points, the second taking the keys of
// the first when it is down.
func TestConsistentHashSameAddress(t *testing.T) {
	paths := []Endpoint{
		&testEP{name: "a", key: "http://10.0.0.1:80/a", w: 1},
		&testEP{name: "b", key: "http://10.0.0.1:80/b", w: 1},
	}
	p := NewConsistentHash(headerKey).Picker(newSet(paths, nil))
	counts := make([]int, 2)
	for k := range 10_000 {
		counts[p.Pick(keyReq("key-"+strconv.Itoa(k)), nil)]++
	}
	if counts[0] < 3000 || counts[1] < 3000 {
		t.Errorf("base paths /a and /b got %v of 10000 keys; want both a fair share", counts)
	}

	schemes := []Endpoint{
		&testEP{name: "a", key: "http://10.0.0.1:80", w: 1},
		&testEP{name: "b", key: "https://10.0.0.1:80", w: 1},
		&testEP{name: "c", key: "http://10.0.0.2:80", w: 1},
	}
	c := NewConsistentHash(headerKey)
	up := c.Picker(newSet(schemes, nil))
	down := c.Picker(newSet(schemes, []int{1, 2}))
	for k := range 1000 {
		r := keyReq("key-" + strconv.Itoa(k))
		i, j := up.Pick(r, nil), down.Pick(r, nil)
		if i == 1 {
			t.Fatalf("key-%d went to b, which shares all its points with a", k)
		}
		if i == 0 && j != 1 || i == 2 && j != 2 {
			t.Fatalf("key-%d: %s, then %s with a down", k, name(schemes, i), name(schemes, j))
		}
	}
}

// TestConsistentHashFallback checks the cases that fall back to round robin
// over Usable: no key func, an empty key, fewer than two members.
func TestConsistentHashFallback(t *testing.T) {
	all := hostEndpoints(4)
	tests := []struct {
		name string
		key  func(*http.Request) string
		all  []Endpoint
		want string
	}{
		{"nil key func", nil, all, ".1 .3 .4 .1 .3"},
		{"empty key", func(*http.Request) string { return "" }, all, ".1 .3 .4 .1 .3"},
		{"one member", headerKey, all[:1], ".1 .1 .1 .1 .1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			usable := []int{0, 2, 3}
			if len(tt.all) == 1 {
				usable = []int{0}
			}
			p := NewConsistentHash(tt.key).Picker(newSet(tt.all, usable))
			got := ""
			for k := range 5 {
				if k > 0 {
					got += " "
				}
				got += name(tt.all, p.Pick(keyReq("x"), nil))
			}
			if got != tt.want {
				t.Errorf("picks = %q; want %q", got, tt.want)
			}
		})
	}
	p := NewConsistentHash(headerKey).Picker(newSet(all[:1], []int{}))
	if got := p.Pick(keyReq("x"), nil); got != -1 {
		t.Errorf("one member, down: pick = %d; want -1", got)
	}
}

// TestConsistentHashTried checks that retries walk the ring past tried and
// down members, and that -1 means every usable member was tried.
func TestConsistentHashTried(t *testing.T) {
	all := hostEndpoints(5)
	p := NewConsistentHash(headerKey).Picker(newSet(all, []int{0, 1, 3}))
	r := keyReq("some-user")
	var tried Tried
	seen := make(map[int]bool)
	for range 3 {
		i := p.Pick(r, &tried)
		if i != 0 && i != 1 && i != 3 || seen[i] {
			t.Fatalf("pick = %s after %v", name(all, i), seen)
		}
		seen[i] = true
		tried.Add(all[i])
	}
	if got := p.Pick(r, &tried); got != -1 {
		t.Errorf("pick with every usable member tried = %d; want -1", got)
	}
	if got := NewConsistentHash(headerKey).Picker(newSet(all, []int{})).Pick(r, nil); got != -1 {
		t.Errorf("pick with nothing usable = %d; want -1", got)
	}
}

// TestConsistentHashBalance measures the ring as §4.3 does, over 10
// backends 10.0.0.1:80 ... 10.0.0.10:80: the busiest member has at most 1.15
// times the mean, and adding or removing a member moves within 1.2 times the
// ideal fraction of keys, all of them to the new member on an add.
func TestConsistentHashBalance(t *testing.T) {
	s := measureRing(10, statsKeys())
	t.Logf("%d keys over 10 backends: max/avg %.3f, min/avg %.3f; moved on add %.2f%% (ideal %.2f%%), on remove %.2f%% (ideal %.2f%%)",
		s.keys, s.maxAvg, s.minAvg, 100*s.movedAdd, 100/11.0, 100*s.movedRemove, 10.0)
	if s.maxAvg > 1.15 {
		t.Errorf("max/avg = %.3f; want ≤ 1.15", s.maxAvg)
	}
	for _, m := range []struct {
		what         string
		moved, ideal float64
	}{{"add", s.movedAdd, 1 / 11.0}, {"remove", s.movedRemove, 1 / 10.0}} {
		if m.moved > 1.2*m.ideal || m.moved < m.ideal/1.2 {
			t.Errorf("moved on %s = %.2f%%; want within 1.2× of %.2f%%", m.what, 100*m.moved, 100*m.ideal)
		}
	}
	if !s.addToNew {
		t.Errorf("on the add, some key moved between old members")
	}
}
