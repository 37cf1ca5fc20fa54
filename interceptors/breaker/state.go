package breaker

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/failsoft/failsoft/interceptors/internal/registry"
	"github.com/failsoft/failsoft/interceptors/observe"
	"github.com/failsoft/failsoft/interceptors/outcome"
)

// ErrOpen is the cause of every rejection by a breaker:
// errors.Is(err, breaker.ErrOpen) tells that a call was failed by an open
// (or busy half-open) breaker without being sent.
var ErrOpen = errors.New("failsoft: breaker: open")

// State is a breaker's state.
type State uint8

const (
	// Closed: calls pass and their outcomes feed the trip rules.
	Closed State = iota
	// Open: calls fail at once until the open period ends.
	Open
	// HalfOpen: a bounded number of probe calls pass; the rest fail at once.
	HalfOpen
)

func (s State) String() string {
	switch s {
	case Closed:
		return "closed"
	case Open:
		return "open"
	case HalfOpen:
		return "half-open"
	}
	return fmt.Sprintf("State(%d)", uint8(s))
}

// Change describes a state change, as given to OnStateChange hooks.
type Change struct {
	Target string
	// Method is the full method name when breakers are kept per method
	// (PerMethod); otherwise empty.
	Method   string
	From, To State
	// Counts at the moment of the change: for a trip, the sliding window's
	// counts and the run of consecutive failures; for a change out of
	// half-open, the probes' counts.
	Counts observe.Counts
	// Reason says which rule tripped the breaker ("5 consecutive failures"),
	// or why it changed otherwise.
	Reason string
	// At is when the change happened.
	At time.Time
	// OpenFor is, when To is Open, how long it stays open before probing.
	OpenFor time.Duration
}

// Snapshot is the readable state of one breaker, for metrics.
type Snapshot struct {
	Target, Method string
	State          State
	Counts         observe.Counts
	// ProbeAt is when an open breaker lets the next probe through.
	ProbeAt time.Time
}

// Packing of a breaker's state and generation into one atomic word: the
// generation increases on every change, so outcomes of calls admitted
// before a change are not counted after it.
const stateMask = 3

func pack(gen uint64, s State) uint64 { return gen<<2 | uint64(s) }

// openInfo is immutable once published: what an open breaker needs to
// reject a call without locking.
type openInfo struct {
	until  int64 // clock offset at which it probes
	step   int64 // RetryAfter is rounded up to a multiple of step
	rej    outcome.Rejection
	counts observe.Counts
	reason string
	// Rejections by rounded RetryAfter, made on first use, so that an open
	// breaker rejects without allocating.
	rejs [retrySteps + 1]atomic.Pointer[outcome.Rejection]
}

// retrySteps is how finely RetryAfter follows the time left: to within
// 1/retrySteps of the open period, rounded up.
const retrySteps = 64

// rejection returns the rejection for a call at clock offset now, before
// the open period ends.
func (o *openInfo) rejection(now int64) *outcome.Rejection {
	i := (o.until - now + o.step - 1) / o.step
	if i < 1 || i > retrySteps {
		i = retrySteps
	}
	if r := o.rejs[i].Load(); r != nil {
		return r
	}
	r := o.rej
	r.RetryAfter = time.Duration(i * o.step)
	o.rejs[i].Store(&r)
	return &r
}

// breaker is the state machine of one target (or target and method).
type breaker struct {
	ic             *Interceptor
	target, method string

	sg     atomic.Uint64 // pack(generation, state)
	consec atomic.Uint32
	// dead is the run of failed attempts, retried or not, for the
	// DeadAfter rule, and deadSince the clock offset of its first failure
	// (noRun while there is none).
	dead      atomic.Uint32
	deadSince atomic.Int64
	cw        *countWindow
	tw        *timeWindow
	open      atomic.Pointer[openInfo]

	recent *recentCalls // for FailuresWithin

	mu      sync.Mutex
	reopens int
	// Half-open probe counts; written under mu, read by Snapshot.
	admitted, inFlight, probeOK atomic.Uint32
	busy                        *outcome.Rejection
}

// noRun is deadSince when no run of failures is under way. It is far in
// the future, so that a run read before its first failure wrote its start
// spans no time and trips nothing.
const noRun = math.MaxInt64

func newBreaker(ic *Interceptor, target, method string) *breaker {
	c := &ic.cfg
	b := &breaker{ic: ic, target: target, method: method}
	b.deadSince.Store(noRun)
	if c.countWindow > 0 {
		b.cw = newCountWindow(c.countWindow)
	}
	if c.timeWindow > 0 {
		b.tw = newTimeWindow(int64(c.timeWindow))
	}
	if c.withinN > 0 {
		b.recent = newRecentCalls(c.recentCalls())
	}
	return b
}

func (b *breaker) name() string {
	if b.method != "" {
		return b.target + " " + b.method
	}
	return b.target
}

// allow admits a call or rejects it. The returned token identifies the
// state the call was admitted in.
func (b *breaker) allow(ctx context.Context, method string) (uint64, *outcome.Rejection) {
	sg := b.sg.Load()
	if State(sg&stateMask) == Closed {
		return sg, nil
	}
	if State(sg&stateMask) == Open {
		info := b.open.Load()
		now := b.ic.now()
		if now < info.until {
			return 0, info.rejection(now)
		}
	}
	return b.allowSlow(ctx, method)
}

func (b *breaker) allowSlow(ctx context.Context, method string) (uint64, *outcome.Rejection) {
	b.mu.Lock()
	defer b.mu.Unlock()
	sg := b.sg.Load()
	switch State(sg & stateMask) {
	case Closed:
		return sg, nil
	case Open:
		info := b.open.Load()
		now := b.ic.now()
		if now < info.until {
			return 0, info.rejection(now)
		}
		b.admitted.Store(0)
		b.inFlight.Store(0)
		b.probeOK.Store(0)
		sg = pack(sg>>2+1, HalfOpen)
		b.sg.Store(sg)
		b.emit(ctx, method, Open, HalfOpen, info.counts, "open period ended", now, 0)
	}
	if b.admitted.Load() < b.ic.cfg.probes {
		b.admitted.Add(1)
		b.inFlight.Add(1)
		return sg, nil
	}
	return 0, b.busy
}

// done reports the outcome of a call admitted with token tok. start is the
// clock offset at which the call was sent, when slow calls are measured.
// absorbed says that the call failed with a code its retry policy retries
// and that the retry layer would retry it: the trip rules count logical
// calls, so such a failure is not counted while the breaker is closed.
// A probe's failure is counted all the same: the target is still down.
func (b *breaker) done(ctx context.Context, method string, tok uint64, class outcome.Class, absorbed bool, start int64) {
	c := &b.ic.cfg
	if State(tok&stateMask) != Closed {
		b.probeDone(ctx, method, tok, class, start)
		return
	}
	if b.sg.Load() != tok {
		return
	}
	var now int64
	if class == outcome.Failure || b.ic.clocked && class == outcome.Success {
		now = b.ic.now()
	}
	if class == outcome.Failure {
		if c.deadAfter > 0 && b.deadRun(now) {
			b.tripDead(ctx, method, tok, now)
			return
		}
	} else if b.dead.Load() != 0 && !(class == outcome.Ignored && ctx.Err() != nil) {
		// Any other result is an answer, even a refusal, but for a call
		// whose caller gave up on it (cancelled, or out of time with a
		// code the classifier ignores): that is no answer. The start is
		// cleared first: a failure that begins a new run meanwhile finds
		// the count at 0 after it, and writes its own start.
		b.deadSince.Store(noRun)
		b.dead.Store(0)
	}
	if class != outcome.Success && class != outcome.Failure || absorbed {
		return
	}
	var v uint32
	if c.slowThreshold > 0 && now-start >= int64(c.slowThreshold) {
		v = bitSlow
	}
	if class == outcome.Success && v == 0 {
		b.record(now, 0)
		if b.consec.Load() != 0 {
			b.consec.Store(0)
		}
		return
	}
	if class == outcome.Failure {
		v |= bitFailure
	}
	b.closedBad(ctx, method, tok, v, now)
}

// deadRun counts a failed attempt that ended at now in the run of DeadAfter
// and says whether the run trips it: DeadAfter's count of failures, the
// first of them at least its span before now.
func (b *breaker) deadRun(now int64) bool {
	c := &b.ic.cfg
	n := b.dead.Add(1)
	if n == 1 {
		b.deadSince.Store(now)
	}
	return n >= c.deadAfter && now-b.deadSince.Load() >= int64(c.deadSpan)
}

// record counts a call's outcome in the windows.
func (b *breaker) record(now int64, v uint32) {
	switch {
	case b.cw != nil:
		b.cw.record(v)
	case b.tw != nil:
		b.tw.record(now, v)
	}
	if b.recent != nil {
		b.recent.record(now, v&bitFailure != 0)
	}
}

// closedBad records a failed or slow call in the closed state and trips
// the breaker when a rule says so.
func (b *breaker) closedBad(ctx context.Context, method string, tok uint64, v uint32, now int64) {
	c := &b.ic.cfg
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.sg.Load() != tok {
		return
	}
	b.record(now, v)
	var consec uint32
	if v&bitFailure != 0 {
		consec = b.consec.Add(1)
	} else if b.consec.Load() != 0 {
		b.consec.Store(0)
	}
	reason := ""
	if v&bitFailure != 0 && c.consecutive > 0 && consec >= c.consecutive {
		reason = fmt.Sprintf("%d consecutive failures", consec)
	}
	if v&bitFailure != 0 && b.recent != nil && reason == "" {
		req, failed := b.recent.within(now, int64(c.withinD))
		if failed >= uint32(c.withinN) && float64(failed) >= c.minFailureRate*float64(req) {
			reason = fmt.Sprintf("%d of %d calls within %v failed", failed, req, c.withinD)
		}
	}
	counts := b.closedCounts(now)
	if reason == "" && uint32(c.minimumCalls) <= counts.Requests && counts.Requests > 0 {
		switch {
		case c.failureRate > 0 && float64(counts.Failures) >= c.failureRate*float64(counts.Requests):
			reason = fmt.Sprintf("%d of the last %d calls failed", counts.Failures, counts.Requests)
		case c.slowRate > 0 && float64(counts.SlowCalls) >= c.slowRate*float64(counts.Requests):
			reason = fmt.Sprintf("%d of the last %d calls took %v or longer", counts.SlowCalls, counts.Requests, c.slowThreshold)
		}
	}
	if reason != "" {
		b.reopens = 0
		b.trip(ctx, method, Closed, counts, reason, now)
	}
}

// tripDead opens the breaker of a target that failed DeadAfter attempts
// in a row over its span.
func (b *breaker) tripDead(ctx context.Context, method string, tok uint64, now int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.sg.Load() != tok {
		return
	}
	b.reopens = 0
	span := time.Duration(max(0, now-b.deadSince.Load()))
	reason := fmt.Sprintf("%d attempts in a row failed over %v", b.dead.Load(), span.Round(time.Millisecond))
	b.trip(ctx, method, Closed, b.closedCounts(now), reason, now)
}

// closedCounts returns the counts of the closed state, as the trip rules
// see them. It takes no lock: hooks may call Snapshots.
func (b *breaker) closedCounts(now int64) observe.Counts {
	var n observe.Counts
	switch {
	case b.cw != nil:
		n.Requests, n.Failures, n.SlowCalls = b.cw.counts()
	case b.tw != nil:
		n.Requests, n.Failures, n.SlowCalls = b.tw.counts(now)
	case b.recent != nil:
		n.Requests, n.Failures = b.recent.within(now, int64(b.ic.cfg.withinD))
	}
	n.Successes = n.Requests - min(n.Failures, n.Requests)
	n.ConsecutiveFailures = b.consec.Load()
	return n
}

// probeDone handles the outcome of a probe.
func (b *breaker) probeDone(ctx context.Context, method string, tok uint64, class outcome.Class, start int64) {
	c := &b.ic.cfg
	var now int64
	if b.ic.clocked || class == outcome.Failure {
		now = b.ic.now()
	}
	slow := c.slowThreshold > 0 && now-start >= int64(c.slowThreshold)
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.sg.Load() != tok {
		return
	}
	b.inFlight.Add(^uint32(0))
	switch {
	case class == outcome.Failure || (class == outcome.Success && slow):
		counts := b.probeCounts()
		counts.Failures = 1
		counts.ConsecutiveFailures = 1
		counts.ConsecutiveSuccesses = 0
		if class == outcome.Success {
			counts.Successes++
			counts.Failures = 0
			counts.SlowCalls = 1
		}
		if now == 0 {
			now = b.ic.now()
		}
		b.reopens++
		reason := "a probe failed"
		if class == outcome.Success {
			reason = "a probe was slow"
		}
		b.trip(ctx, method, HalfOpen, counts, reason, now)
	case class == outcome.Success:
		ok := b.probeOK.Add(1)
		if ok >= c.probes {
			counts := b.probeCounts()
			if now == 0 {
				now = b.ic.now()
			}
			b.close(ctx, method, tok, counts, now)
		}
	default:
		// Neither success nor failure: free the slot for another probe.
		b.admitted.Add(^uint32(0))
	}
}

func (b *breaker) probeCounts() observe.Counts {
	ok := b.probeOK.Load()
	return observe.Counts{
		Requests:             b.admitted.Load() - b.inFlight.Load(),
		Successes:            ok,
		ConsecutiveSuccesses: ok,
	}
}

// trip opens the breaker. Called with mu held.
func (b *breaker) trip(ctx context.Context, method string, from State, counts observe.Counts, reason string, now int64) {
	c := &b.ic.cfg
	d := c.openFor
	for i := 0; i < b.reopens && d < c.maxOpenFor; i++ {
		d *= 2
	}
	// Drawn between half and all of it, so that the clients of a fleet
	// that tripped together do not probe together.
	d = min(d, c.maxOpenFor)
	d -= time.Duration(c.rand() * float64(d/2))
	at := b.ic.at(now + int64(d))
	info := &openInfo{
		until:  now + int64(d),
		step:   max(1, (int64(d)+retrySteps-1)/retrySteps),
		counts: counts,
		reason: reason,
		rej: outcome.Rejection{
			Layer:  "breaker",
			Target: b.target,
			Code:   codes.Unavailable,
			Message: fmt.Sprintf("failsoft: breaker: %s is open (%s); it probes again at %s, %v after it opened",
				b.name(), reason, at.UTC().Format("15:04:05.000Z07:00"), d),
			Cause: ErrOpen,
		},
	}
	b.busy = &outcome.Rejection{
		Layer:   "breaker",
		Target:  b.target,
		Code:    codes.Unavailable,
		Message: fmt.Sprintf("failsoft: breaker: %s is half-open and its %d probe calls are in flight", b.name(), c.probes),
		Cause:   ErrOpen,
	}
	b.open.Store(info)
	b.deadSince.Store(noRun)
	b.dead.Store(0)
	b.sg.Store(pack(b.sg.Load()>>2+1, Open))
	b.emit(ctx, method, from, Open, counts, reason, now, d)
}

// close closes the breaker after enough successful probes. Called with mu
// held.
func (b *breaker) close(ctx context.Context, method string, tok uint64, counts observe.Counts, now int64) {
	if b.cw != nil {
		b.cw.reset()
	}
	if b.tw != nil {
		b.tw.reset()
	}
	if b.recent != nil {
		b.recent.reset()
	}
	b.consec.Store(0)
	b.deadSince.Store(noRun)
	b.dead.Store(0)
	b.reopens = 0
	b.sg.Store(pack(tok>>2+1, Closed))
	b.emit(ctx, method, HalfOpen, Closed, counts, fmt.Sprintf("%d probes succeeded", counts.Successes), now, 0)
}

// emit reports a change to the hooks and the observer. Called with mu held,
// so changes are reported in order.
func (b *breaker) emit(ctx context.Context, method string, from, to State, counts observe.Counts, reason string, now int64, openFor time.Duration) {
	ic := b.ic
	if len(ic.cfg.hooks) > 0 {
		ch := Change{Target: b.target, Method: b.method, From: from, To: to, Counts: counts, Reason: reason, At: ic.at(now), OpenFor: openFor}
		for _, h := range ic.cfg.hooks {
			h(ch)
		}
	}
	if ic.cfg.Observer != nil {
		ic.cfg.Observer.Observe(ctx, observe.Event{
			Kind: observe.BreakerState, Method: method, Target: b.target,
			From: from.String(), To: to.String(), Counts: counts, Reason: reason, Duration: openFor,
		})
	}
}

// worth says what dropping the breaker to make room in the registry would
// lose: nothing for a closed breaker that counted no failure; little for
// one that did, or for an open one that nobody called since it could
// probe; an open or probing breaker is needed, since a new one would let
// its calls through.
func (b *breaker) worth() registry.Worth {
	switch State(b.sg.Load() & stateMask) {
	case Closed:
		n := b.closedCounts(b.ic.now())
		if n.Failures == 0 && n.ConsecutiveFailures == 0 && n.SlowCalls == 0 && b.dead.Load() == 0 {
			return registry.Nothing
		}
		return registry.Little
	case Open:
		if b.ic.now() >= b.open.Load().until {
			return registry.Little
		}
	case HalfOpen:
		if b.inFlight.Load() == 0 {
			return registry.Little
		}
	}
	return registry.Needed
}

// snapshot reads the breaker's state and the counts its trip rules use.
func (b *breaker) snapshot() Snapshot {
	s := Snapshot{Target: b.target, Method: b.method}
	sg := b.sg.Load()
	s.State = State(sg & stateMask)
	switch s.State {
	case Closed:
		s.Counts = b.closedCounts(b.ic.now())
	case Open:
		info := b.open.Load()
		s.Counts = info.counts
		s.ProbeAt = b.ic.at(info.until)
	case HalfOpen:
		s.Counts = b.probeCounts()
	}
	return s
}
