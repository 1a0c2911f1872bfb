package lb

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/tinylb/lb/health"
	"github.com/tinylb/lb/internal/loadweight"
	"github.com/tinylb/lb/internal/passive"
	"github.com/tinylb/lb/strategy"
)

// slowStartScale is the number of weight units per configured unit while
// slow start is on: HAProxy's 16 steps, so that a backend of weight 1 can
// ramp too.
const slowStartScale = 16

// passiveThreshold is the failure threshold that obs gives the smooth
// weighted strategies (strategy.Set.MaxFails): a failure lowers a
// backend's effective weight by weight/threshold, as nginx's max_fails
// does. Only a [health.Passive] has one; other observers, and none, give 0:
// failures cost no weight.
func passiveThreshold(obs health.Observer) int {
	switch p := obs.(type) {
	case health.Passive:
		return passive.Threshold(p.MaxFails)
	case *health.Passive:
		if p != nil {
			return passive.Threshold(p.MaxFails)
		}
	}
	return 0
}

// addedLocked starts tracking a backend that joined the pool: its passive
// tracker, its active checker, its slow-start ramp. pool.mu must be held.
func (b *Balancer) addedLocked(be *Backend) {
	if b.o.observer != nil {
		b.trackers[be] = b.o.observer.Track(be.url)
	}
	now := b.now()
	if b.o.checker != nil {
		sched := health.Schedule{}
		if sc, ok := b.o.checker.(health.Scheduler); ok {
			sched = sc.Schedule()
		}
		if sched.StartDown && be.alive {
			be.alive = false
			be.reason = "waiting for its first health check"
		}
		ctx, stop := context.WithCancel(b.ctx)
		b.checkers[be] = stop
		checker := b.o.checker
		b.wg.Go(func() {
			health.Run(ctx, checker, be.url, sched, func(r health.Report) { b.onCheck(be, r) })
		})
	}
	if b.load != nil {
		b.loadAddedLocked(be)
	}
	if b.started && b.o.slowStart > 0 {
		be.upSince = now
	}
	if b.started {
		b.emit(Event{Kind: EventBackendAdded, Time: now, Backend: be})
		b.log.LogAttrs(context.Background(), slog.LevelInfo, "lb: backend added", slog.String("backend", be.key))
	}
}

// removedLocked stops tracking a backend that left the pool. Its checker is
// told to stop; Close waits for it. pool.mu must be held.
func (b *Balancer) removedLocked(be *Backend) {
	if stop, ok := b.checkers[be]; ok {
		stop()
		delete(b.checkers, be)
	}
	delete(b.trackers, be)
	delete(b.states, be)
	delete(b.stickyEntries, be)
	if b.load != nil {
		b.loadRemovedLocked(be)
	}
	b.emit(Event{Kind: EventBackendRemoved, Time: b.now(), Backend: be})
	b.log.LogAttrs(context.Background(), slog.LevelInfo, "lb: backend removed", slog.String("backend", be.key))
}

// stateLocked computes be's state at now and, for states that end by
// themselves, when they end (zero if never). pool.mu must be held.
func (b *Balancer) stateLocked(be *Backend, now time.Time) (State, time.Time) {
	if be.maintenance {
		return StateMaintenance, time.Time{}
	}
	if be.draining {
		return StateDraining, time.Time{}
	}
	if !be.alive {
		return StateDown, time.Time{}
	}
	if !be.ejectedUntil.IsZero() {
		if now.Before(be.ejectedUntil) {
			return StateEjected, be.ejectedUntil
		}
		if b.o.checker != nil {
			// The active checker decides when the backend is back: its
			// next passing check clears the ejection.
			return StateEjected, time.Time{}
		}
		be.probing = true
		return StateProbing, time.Time{}
	}
	if b.o.slowStart > 0 && !be.upSince.IsZero() {
		if end := be.upSince.Add(b.o.slowStart); now.Before(end) {
			return StateSlowStart, b.nextRampStep(be, now)
		}
		be.upSince = time.Time{}
	}
	return StateUp, time.Time{}
}

// rampUnits is be's weight in 1/16 units of its configured weight during
// slow start: 1 at the start, 16 at the end, linear in between.
func (b *Balancer) rampUnits(be *Backend, now time.Time) int64 {
	elapsed := now.Sub(be.upSince)
	if elapsed < 0 {
		elapsed = 0
	}
	u := 1 + int64(slowStartScale-1)*int64(elapsed)/int64(b.o.slowStart)
	return min(u, slowStartScale)
}

// nextRampStep is when be's ramp weight next grows.
func (b *Balancer) nextRampStep(be *Backend, now time.Time) time.Time {
	u := b.rampUnits(be, now)
	// rampUnits grows to u+1 once elapsed ≥ u*W/15.
	d := time.Duration((u*int64(b.o.slowStart) + slowStartScale - 2) / (slowStartScale - 1))
	return be.upSince.Add(d)
}

// publishLocked rebuilds the snapshot from the pool's members and their
// health, asks the strategy for a new picker, stores it, and reports state
// transitions. pool.mu must be held for writing.
func (b *Balancer) publishLocked() {
	if b.closed.Load() {
		return
	}
	now := b.now()
	members := b.pool.backends
	n := len(members)
	s := &snapshot{
		backends: make([]*Backend, n),
		trackers: make([]health.Tracker, n),
	}
	set := &strategy.Set{
		All:      make([]strategy.Endpoint, n),
		Weights:  make([]int, n),
		Scale:    1,
		MaxFails: b.maxFails,
	}
	if b.o.slowStart > 0 {
		set.Scale = slowStartScale
	}
	base := set.Scale // units of the ramp
	if b.load != nil {
		set.Scale *= loadweight.Scale
		s.windows = make([]*loadweight.Window, n)
		s.factors = make([]int, n)
	}
	var refresh time.Time
	states := make([]State, n)
	var primaries, primaryUp, backupUp int
	for i, be := range members {
		s.backends[i] = be
		s.trackers[i] = b.trackers[be]
		set.All[i] = be
		st, until := b.stateLocked(be, now)
		states[i] = st
		if !until.IsZero() && (refresh.IsZero() || until.Before(refresh)) {
			refresh = until
		}
		if b.load != nil {
			s.windows[i] = b.load.windows[be]
			s.factors[i] = b.load.unitsOf(be)
		}
		set.Weights[i] = b.weightLocked(be, st, now, base, s.factors, i)
		usable := st == StateUp || st == StateSlowStart || st == StateProbing
		if be.Backup() {
			if usable {
				backupUp++
			}
			continue
		}
		primaries++
		if usable {
			primaryUp++
		}
	}
	panicking := b.o.panicThreshold > 0 && primaries > 0 && primaryUp*100 < b.o.panicThreshold*primaries
	useBackups := primaryUp == 0 && !panicking
	for i, be := range members {
		st := states[i]
		usable := st == StateUp || st == StateSlowStart || st == StateProbing
		switch {
		case be.Backup() && !useBackups:
			usable = false
		case !be.Backup() && panicking && st != StateDraining && st != StateMaintenance:
			usable = true
		}
		if !usable {
			continue
		}
		set.Usable = append(set.Usable, i)
		if st == StateProbing && !panicking {
			if s.gated == nil {
				s.gated = make([]bool, n)
			}
			s.gated[i] = true
		}
	}
	s.usable = len(set.Usable)
	if b.o.sticky != nil {
		s.sticky = b.stickySnapLocked(members, set.Usable)
	}
	s.panicking = panicking
	s.states = states
	s.weights = set.Weights
	s.scale = set.Scale
	if !refresh.IsZero() {
		s.refreshAt = refresh.UnixNano()
	}
	s.picker = b.strat.Picker(set)
	s.observer, _ = s.picker.(strategy.Observer)
	s.latency, _ = s.picker.(strategy.LatencyObserver)
	b.snap.Store(s)

	b.transitionsLocked(members, states, now)
	if panicking {
		b.log.LogAttrs(context.Background(), slog.LevelWarn, "lb: panic mode: too few healthy backends, balancing over all",
			slog.Int("healthy", primaryUp), slog.Int("primaries", primaries))
	}
}

// weightLocked is the weight of member be (position i of factors, nil
// without load reports) in state st, in units of base (the ramp's scale)
// times loadweight.Scale with load reports: its configured weight, ramped
// during slow start, times its load factor. pool.mu must be held.
func (b *Balancer) weightLocked(be *Backend, st State, now time.Time, base int, factors []int, i int) int {
	w := int64(be.Weight()) * int64(base)
	if st == StateSlowStart {
		w = int64(be.Weight()) * b.rampUnits(be, now)
	}
	if factors != nil {
		w *= int64(factors[i])
	}
	return int(max(w, 1))
}

// transitionsLocked records the members' new states and reports those
// that changed. pool.mu must be held.
func (b *Balancer) transitionsLocked(members []*Backend, states []State, now time.Time) {
	for i, be := range members {
		old, seen := b.states[be]
		b.states[be] = states[i]
		if !seen || old == states[i] {
			continue
		}
		b.transition(be, old, states[i], now)
		if b.load != nil && (states[i] == StateDown || states[i] == StateEjected) {
			// Reports from before an outage describe another backend:
			// its weight waits out a new blackout (A58, on
			// reconnection).
			b.load.windows[be].Reset()
		}
	}
}

// transition reports a state change: an event and an Info log record.
func (b *Balancer) transition(be *Backend, from, to State, now time.Time) {
	b.emit(Event{Kind: EventStateChanged, Time: now, Backend: be, From: from, To: to, Reason: be.reason})
	b.log.LogAttrs(context.Background(), slog.LevelInfo, "lb: backend state changed",
		slog.String("backend", be.key), slog.String("from", from.String()),
		slog.String("to", to.String()), slog.String("reason", be.reason))
}

func (b *Balancer) emit(ev Event) {
	b.events.send(ev)
}

// onCheck applies an active check's result to be.
func (b *Balancer) onCheck(be *Backend, r health.Report) {
	p := b.pool
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, ours := b.checkers[be]; !ours || b.closed.Load() {
		return // removed or closed while the check ran
	}
	be.lastCheck, be.lastCheckErr = r.Time, r.Err
	changed := false
	if r.Up != be.alive {
		be.alive = r.Up
		changed = true
		if r.Up {
			be.reason = fmt.Sprintf("health check passed (%d in a row)", r.Passes)
			if b.o.slowStart > 0 {
				be.upSince = b.now()
			}
		} else {
			be.reason = fmt.Sprintf("health check failed (%d in a row): %v", r.Fails, r.Err)
			be.upSince = time.Time{}
		}
	}
	if r.Err == nil && !be.ejectedUntil.IsZero() && !b.now().Before(be.ejectedUntil) {
		// The ejection is over and the checker says the backend is fine.
		b.clearEjectionLocked(be, "health check passed after ejection")
		changed = true
	}
	if changed {
		b.publishLocked()
	}
}

// clearEjectionLocked brings an ejected backend back. pool.mu must be held.
func (b *Balancer) clearEjectionLocked(be *Backend, reason string) {
	be.ejectedUntil = time.Time{}
	be.probing = false
	be.reason = reason
	if tr := b.trackers[be]; tr != nil {
		tr.Reset()
	}
	if b.o.slowStart > 0 {
		be.upSince = b.now()
	}
}

// eject takes be out of rotation until until, after a failed attempt.
func (b *Balancer) eject(be *Backend, until time.Time, reason string) {
	p := b.pool
	p.mu.Lock()
	defer p.mu.Unlock()
	if b.closed.Load() || be.pool.Load() != p {
		return
	}
	if !until.After(be.ejectedUntil) && !be.probing {
		return
	}
	be.ejectedUntil = until
	be.ejectFor = until.Sub(b.now())
	be.probing = false
	be.upSince = time.Time{}
	be.reason = reason
	b.publishLocked()
}

// probeDone settles the probe request sent to be after its ejection.
func (b *Balancer) probeDone(be *Backend, res strategy.Result) {
	defer be.probeTaken.Store(false)
	switch res {
	case strategy.Ignored:
		return
	case strategy.Failure:
		d := be.ejectFor
		if d <= 0 {
			d = 10 * time.Second
		}
		b.eject(be, b.now().Add(d), "probe request after ejection failed")
	case strategy.Success:
		p := b.pool
		p.mu.Lock()
		defer p.mu.Unlock()
		if b.closed.Load() || be.pool.Load() != p || !be.probing {
			return
		}
		b.clearEjectionLocked(be, "probe request after ejection succeeded")
		b.publishLocked()
	}
}
