package strategy

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// bhLoads returns the in-flight counts of All as p sees them.
func bhLoads(p Picker) []int {
	bp := p.(*bhPicker)
	c := make([]int, len(bp.load))
	for i, l := range bp.load {
		c[i] = int(l.n.Load())
	}
	return c
}

// bhSetLoads sets the in-flight counts of All, and the strategy's total
// with them.
func bhSetLoads(p Picker, loads []int) {
	bp := p.(*bhPicker)
	for i, v := range loads {
		old := bp.load[i].n.Swap(int64(v))
		bp.total.Add(int64(v) - old)
	}
}

// refSlots is HAProxy's chash_server_is_eligible for every server of a
// backend at once, in its unsigned integer arithmetic: served requests in
// flight, hash-balance-factor pct, and the eweights of the usable servers
// in configuration order.
func refSlots(served, pct uint, eweights []uint) []uint {
	var tw uint
	for _, w := range eweights {
		tw += w
	}
	tot := ((served+1)*pct + 99) / 100
	perWeight, rem := tot/tw, tot%tw
	out := make([]uint, len(eweights))
	var cum uint
	for i, w := range eweights {
		s := w*perWeight + (cum+w)*rem/tw - cum*rem/tw
		if s == 0 {
			s = 1
		}
		out[i] = s
		cum += w
	}
	return out
}

// pickerSlots returns the slots p gives each usable member now.
func pickerSlots(p Picker, usable []int) []uint {
	bp := p.(*bhPicker)
	tot := bp.totalSlots()
	out := make([]uint, len(usable))
	for k, i := range usable {
		out[k] = uint(bp.slots(i, tot))
	}
	return out
}

// TestBoundedHashSlotVectors checks the §5.1 slot vector table, with the
// reference formula and with the picker's arithmetic (eweights as
// Set.Weights at Scale 16, the loads spread over the members).
func TestBoundedHashSlotVectors(t *testing.T) {
	tests := []struct {
		served   uint
		pct      uint
		eweights []uint
		totSlots uint
		want     []uint
	}{
		{9, 125, []uint{16, 16, 16}, 13, []uint{4, 4, 5}},
		{99, 125, []uint{16, 16, 16, 16}, 125, []uint{31, 31, 31, 32}},
		{9, 150, []uint{32, 16, 16}, 15, []uint{7, 4, 4}},
		{0, 125, []uint{16, 16, 16}, 2, []uint{1, 1, 1}},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.served, " ", tt.pct, " ", tt.eweights), func(t *testing.T) {
			assert.Equal(t, tt.want, refSlots(tt.served, tt.pct, tt.eweights), "reference formula")

			weights := make([]int, len(tt.eweights))
			for i, w := range tt.eweights {
				weights[i] = int(w) / 16
			}
			set := scaledSet(endpoints(weights...), nil, 16)
			p := NewBoundedHash(headerKey, float64(tt.pct)/100).Picker(set)
			loads := make([]int, len(weights))
			for k := range tt.served {
				loads[k%uint(len(loads))]++
			}
			bhSetLoads(p, loads)
			assert.Equal(t, uint64(tt.totSlots), p.(*bhPicker).totalSlots(), "tot_slots")
			assert.Equal(t, tt.want, pickerSlots(p, set.Usable), "picker slots")
		})
	}
}

// TestBoundedHashFactor checks how c becomes the factor in use and what
// Validate says of it.
func TestBoundedHashFactor(t *testing.T) {
	tests := []struct {
		c      float64
		factor uint64
		valid  bool
	}{
		{1.25, 12500, true},
		{1.1, 11000, true}, // exactly HAProxy's 110, with no float rounding
		{1, 10000, true},
		{2, 20000, true},
		{1.00001, 10000, true}, // 4 decimal places
		{1e300, maxBalanceFactor * factorUnit, true},
		{0.99, 10000, false},
		{0, 10000, false},
		{-3, 10000, false},
		{math.NaN(), 10000, false},
		{math.Inf(1), maxBalanceFactor * factorUnit, false},
		{math.Inf(-1), 10000, false},
	}
	for _, tt := range tests {
		b := NewBoundedHash(headerKey, tt.c)
		assert.Equal(t, tt.factor, b.factor, "c = %v", tt.c)
		err := b.Validate()
		if tt.valid {
			assert.NoError(t, err, "c = %v", tt.c)
			continue
		}
		require.Error(t, err, "c = %v", tt.c)
		assert.True(t, errors.Is(err, ErrInvalidBalanceFactor), "c = %v: %v", tt.c, err)
		assert.Contains(t, err.Error(), fmt.Sprint(tt.c))
	}
	// (9+1)·1.1 is 11.000000000000002 in float64; HAProxy's 110 gives 11.
	p := NewBoundedHash(headerKey, 1.1).Picker(newSet(hostEndpoints(3), nil))
	bhSetLoads(p, []int{9, 0, 0})
	assert.Equal(t, uint64(11), p.(*bhPicker).totalSlots())
}

// TestBoundedHashBadFactorPicks checks that a c below 1, or NaN, picks as
// 1 does, and +Inf as a plain ConsistentHash, without panicking.
func TestBoundedHashBadFactorPicks(t *testing.T) {
	all := hostEndpoints(5)
	run := func(s Strategy) string {
		p := s.Picker(newSet(all, nil))
		var b strings.Builder
		for k := range 200 { // nothing finishes: the bound binds
			b.WriteString(name(all, p.Pick(keyReq("k"+strconv.Itoa(k%7)), nil)))
		}
		return b.String()
	}
	one := run(NewBoundedHash(headerKey, 1))
	assert.Equal(t, one, run(NewBoundedHash(headerKey, 0.5)))
	assert.Equal(t, one, run(NewBoundedHash(headerKey, math.NaN())))
	assert.Equal(t, run(NewConsistentHash(headerKey)), run(NewBoundedHash(headerKey, math.Inf(1))))
	assert.NotEqual(t, one, run(NewConsistentHash(headerKey)), "the bound never bound")
}

// TestBoundedHashSpill is the explicit example: on the §4.2 ring of .1, .2
// and .3, key "a" belongs to .2, and .1 follows .2 along its walk. With
// c = 1.25 and no request finishing, the first "a" goes home; the second
// finds .2 at its 1 slot (T=1: 3 slots for 3 members) and goes to .1; the
// third (T=2: 4 slots, 1 1 2) finds .2 and .1 full and goes on to .3; the
// fourth (T=3: 5 slots, 1 2 2) has room at home again. Once the requests
// finish, "a" is back home.
func TestBoundedHashSpill(t *testing.T) {
	all := hostEndpoints(3)
	s := NewBoundedHash(headerKey, 1.25)
	p := s.Picker(newSet(all, nil))
	r := keyReq("a")
	var got []string
	var picked []int
	for range 4 {
		i := p.Pick(r, nil)
		got = append(got, name(all, i))
		picked = append(picked, i)
	}
	assert.Equal(t, ".2 .1 .3 .2", strings.Join(got, " "))
	assert.Equal(t, []int{1, 2, 1}, bhLoads(p))
	for _, e := range all {
		assert.Equal(t, map[string]int{".1": 1, ".2": 2, ".3": 1}[name(all, indexOf(all, e))], s.InFlight(e))
	}
	for _, i := range picked {
		p.(Observer).Done(i, Success)
	}
	assert.Equal(t, []int{0, 0, 0}, bhLoads(p))
	assert.Equal(t, int64(0), s.total.Load())
	assert.Equal(t, ".2", name(all, p.Pick(r, nil)))

	// Weighted by slow start: .2 and .3 halfway up (Set.Weights 16 8 8 at
	// Scale 16, in the ratio of the §5.1 row 32 16 16), c = 1.5, nine in
	// flight: the slots are 7 4 4. With .2 at 4 of its 4, "a" goes to .1,
	// which has room.
	set := scaledSet(all, nil, 16)
	set.Weights = []int{16, 8, 8}
	p = NewBoundedHash(headerKey, 1.5).Picker(set)
	bhSetLoads(p, []int{5, 4, 0})
	require.Equal(t, []uint{7, 4, 4}, pickerSlots(p, set.Usable))
	assert.Equal(t, ".1", name(all, p.Pick(r, nil)), "with .2 full")
	assert.Equal(t, []int{6, 4, 0}, bhLoads(p))
}

// indexOf returns the position of e in all, or -1.
func indexOf(all []Endpoint, e Endpoint) int {
	for i, x := range all {
		if x == e {
			return i
		}
	}
	return -1
}

// TestBoundedHashLowLoad is property 3: while loads allow (one request at
// a time), BoundedHash picks what ConsistentHash picks for 10,000 keys,
// over 10 members of mixed weights with two of them down.
func TestBoundedHashLowLoad(t *testing.T) {
	all := make([]Endpoint, 10)
	for i := range all {
		all[i] = &testEP{name: fmt.Sprintf(".%d", i+1), key: fmt.Sprintf("http://10.0.0.%d:80", i+1), w: 1 + i%3}
	}
	for _, usable := range [][]int{nil, without(10, 2, 7)} {
		set := newSet(all, usable)
		ch := NewConsistentHash(headerKey).Picker(set)
		bh := NewBoundedHash(headerKey, 1.25).Picker(set)
		for k := range 10_000 {
			r := keyReq("key-" + strconv.Itoa(k))
			want, got := ch.Pick(r, nil), bh.Pick(r, nil)
			require.Equal(t, name(all, want), name(all, got), "key-%d, usable %v", k, usable)
			bh.(Observer).Done(got, Success)
		}
	}
}

// TestBoundedHashAgree is property 4, as TestConsistentHashAgree: two
// independent strategies over the same URLs, in different orders and with
// different Endpoint values, send every key to the same URL while loads
// are low.
func TestBoundedHashAgree(t *testing.T) {
	a := hostEndpoints(7)
	b := hostEndpoints(7)
	b[0], b[6], b[2], b[3] = b[6], b[0], b[3], b[2]
	pa := NewBoundedHash(headerKey, 1.25).Picker(newSet(a, nil))
	pb := NewBoundedHash(headerKey, 1.25).Picker(newSet(b, nil))
	for k := range 10_000 {
		r := keyReq("key-" + strconv.Itoa(k))
		ia, ib := pa.Pick(r, nil), pb.Pick(r, nil)
		require.Equal(t, a[ia].Key(), b[ib].Key(), "key-%d", k)
		pa.(Observer).Done(ia, Success)
		pb.(Observer).Done(ib, Success)
	}
}

// TestBoundedHashFallback checks the cases that fall back to round robin,
// as ConsistentHash does: no key func, an empty key, fewer than two
// members. Round-robin picks are counted but not bounded.
func TestBoundedHashFallback(t *testing.T) {
	all := hostEndpoints(4)
	for _, tt := range []struct {
		name string
		s    *BoundedHash
		all  []Endpoint
		want string
	}{
		{"nil key func", NewBoundedHash(nil, 1.25), all, ".1 .3 .4 .1 .3"},
		{"empty key", NewBoundedHash(headerKey, 1.25), all, ".1 .3 .4 .1 .3"},
		{"one member", NewBoundedHash(headerKey, 1.25), all[:1], ".1 .1 .1 .1 .1"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			usable := []int{0, 2, 3}
			if len(tt.all) == 1 {
				usable = []int{0}
			}
			p := tt.s.Picker(newSet(tt.all, usable))
			key := "x"
			if tt.name == "empty key" {
				key = ""
			}
			var got []string
			for range 5 {
				got = append(got, name(tt.all, p.Pick(keyReq(key), nil)))
			}
			assert.Equal(t, tt.want, strings.Join(got, " "))
			assert.Equal(t, int64(5), tt.s.total.Load())
			assert.Equal(t, strings.Count(tt.want, ".1"), tt.s.InFlight(tt.all[0]))
		})
	}
	p := NewBoundedHash(headerKey, 1.25).Picker(newSet(all[:1], []int{}))
	assert.Equal(t, -1, p.Pick(keyReq("x"), nil), "one member, down")
	p = NewBoundedHash(headerKey, 1.25).Picker(newSet(all, []int{}))
	assert.Equal(t, -1, p.Pick(keyReq("x"), nil), "nothing usable")
}

// TestBoundedHashTried checks that retries walk past tried and down
// members, that a retry goes to a full member only when every untried one
// is full, and that -1 means every usable member was tried.
func TestBoundedHashTried(t *testing.T) {
	all := hostEndpoints(5)
	p := NewBoundedHash(headerKey, 1.25).Picker(newSet(all, []int{0, 1, 3}))
	r := keyReq("some-user")
	var tried Tried
	seen := make(map[int]bool)
	for range 3 {
		i := p.Pick(r, &tried)
		require.True(t, (i == 0 || i == 1 || i == 3) && !seen[i], "pick %s after %v", name(all, i), seen)
		seen[i] = true
		tried.Add(all[i])
	}
	assert.Equal(t, -1, p.Pick(r, &tried), "every usable member tried")

	// §4.2 ring: "a" is .2's, then .1's. With .2 tried, the retry goes to
	// .1 if it has room, else to .3; with .3 full as well, to .1 anyway.
	all = hostEndpoints(3)
	p = NewBoundedHash(headerKey, 1.25).Picker(newSet(all, nil))
	var t2 Tried
	t2.Add(all[1])
	a := keyReq("a")
	assert.Equal(t, ".1", name(all, p.Pick(a, &t2)))
	bhSetLoads(p, []int{1, 0, 0}) // T=1: slots 1 1 1
	assert.Equal(t, ".3", name(all, p.Pick(a, &t2)))
	bhSetLoads(p, []int{1, 0, 1}) // T=2: slots 1 1 2
	assert.Equal(t, ".3", name(all, p.Pick(a, &t2)))
	bhSetLoads(p, []int{1, 0, 2}) // T=3: slots 1 2 2, .1 and .3 full
	assert.Equal(t, ".1", name(all, p.Pick(a, &t2)), "every untried member full")
	assert.Equal(t, []int{2, 0, 2}, bhLoads(p))
}

// TestBoundedHashRebuild checks that the counts survive new pickers, that
// members down or dropped do not count towards T, and that a dropped
// member keeps its count until its requests are done.
func TestBoundedHashRebuild(t *testing.T) {
	all := hostEndpoints(4)
	s := NewBoundedHash(headerKey, 1.25)
	p0 := s.Picker(newSet(all, nil))
	bhSetLoads(p0, []int{3, 1, 0, 2})
	p1 := s.Picker(newSet(all, []int{0, 1, 2}))
	assert.Equal(t, []int{3, 1, 0, 2}, bhLoads(p1))
	// T counts the usable members only: 4, so 7 slots over 3.
	assert.Equal(t, uint64(7), p1.(*bhPicker).totalSlots())
	assert.Same(t, p0.(*bhPicker).ring, p1.(*bhPicker).ring, "ring reused")

	// Drop .4 (2 in flight) and .3 (none).
	p2 := s.Picker(newSet(all[:2], nil))
	assert.Equal(t, 2, s.InFlight(all[3]))
	assert.Equal(t, uint64(7), p2.(*bhPicker).totalSlots(), "T excludes the dropped member")
	p0.(Observer).Done(3, Success)
	p1.(Observer).Done(3, Success)
	assert.Equal(t, 0, s.InFlight(all[3]))
	p0.(Observer).Done(3, Success) // nothing left in flight: ignored
	assert.Equal(t, 0, s.InFlight(all[3]))
	assert.Equal(t, int64(4), s.total.Load())
	s.Picker(newSet(all[:2], nil))
	_, kept := s.state[all[3]]
	assert.False(t, kept, "an idle dropped member is forgotten")

	// Back: .1 still has 3 in flight.
	p3 := s.Picker(newSet(all, nil))
	assert.Equal(t, []int{3, 1, 0, 0}, bhLoads(p3))
	p3.(Observer).Done(-1, Success)
	p3.(Observer).Done(4, Success)
}
