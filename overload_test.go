package failsoft

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"pgregory.net/rapid"

	"github.com/failsoft/failsoft/interceptors/breaker"
	"github.com/failsoft/failsoft/interceptors/clock"
	"github.com/failsoft/failsoft/interceptors/observe"
	"github.com/failsoft/failsoft/interceptors/policy"
	"github.com/failsoft/failsoft/interceptors/retry"
	"github.com/failsoft/failsoft/interceptors/throttle"
	policytestv1 "github.com/failsoft/failsoft/proto/failsoft/policytest/v1"
	failsoftv1 "github.com/failsoft/failsoft/proto/failsoft/v1"
)

// These tests drive the whole client suite (the chain DialOptions
// installs) over a fake target, with a fake clock and seeded randomness, to
// check how the throttle, the retry budget and the breaker act together
// when a target is healthy, overloaded or dead:
//
//   - an overloaded target never opens the breaker;
//   - a dead target does, with the seed's rule (5 failures within 30 s)
//     and with the default rule (half of the last 100 calls, at least 20);
//   - under a sustained overload the attempts that reach the target stay
//     within 1.2 times the logical calls;
//   - traffic to a healthy target is never rejected locally (after an
//     overload or an outage, only as long as the throttle's window
//     remembers the overload or the breaker is open, as the model says).
//
// TestOverloadModel checks every attempt of random sequences of regimes
// against a model of the three layers; TestOverloadRegimes shows the same
// properties on fixed scenarios, with the figures they produce.

// overloadMethod is retryable (NO_SIDE_EFFECTS) and not hedged.
const overloadMethod = "/failsoft.policytest.v1.PlainService/NoSideEffects"

// clockStep is how far the driver moves the fake clock each time the call
// under way waits on a timer (a retry's backoff or pushback).
const clockStep = 10 * time.Millisecond

type regime uint8

const (
	healthy regime = iota
	overloaded
	dead
)

func (r regime) String() string { return [...]string{"healthy", "overloaded", "dead"}[r] }

// phase is a stretch of calls against a target in one regime.
type phase struct {
	regime regime
	calls  int
	gap    time.Duration // fake time between calls

	// overloaded: the target accepts at most capacity attempts per second
	// of fake time, or, when capacity is 0, rejects each attempt with
	// probability reject. Rejections carry code and, when not empty, the
	// pushback trailer.
	capacity int
	reject   float64
	code     codes.Code
	pushback string

	// dead: each attempt fails with one of these codes.
	deadCodes []codes.Code
}

func (p phase) String() string {
	switch p.regime {
	case overloaded:
		shed := fmt.Sprintf("reject %.2f", p.reject)
		if p.capacity > 0 {
			shed = fmt.Sprintf("capacity %d/s", p.capacity)
		}
		return fmt.Sprintf("%d overloaded calls every %v (%s, %v, pushback %q)", p.calls, p.gap, shed, p.code, p.pushback)
	case dead:
		return fmt.Sprintf("%d dead calls every %v (%v)", p.calls, p.gap, p.deadCodes)
	}
	return fmt.Sprintf("%d healthy calls every %v", p.calls, p.gap)
}

// Kinds of log entries that are not observer events.
const (
	kindAnswer observe.Kind = 200 + iota // the target answered an attempt
	kindDraw                             // the throttle drew a random number
)

// entry is one thing that happened during a call, in order: an observer
// event, a throttle draw or the target's answer.
type entry struct {
	kind     observe.Kind
	at       time.Duration // fake time since the start
	attempt  int
	reason   string
	from, to string
	value    float64
	duration time.Duration
	code     codes.Code // answers
	pushback string     // answers
}

func (e entry) String() string {
	switch e.kind {
	case kindAnswer:
		return fmt.Sprintf("%v answer %v pushback=%q", e.at, e.code, e.pushback)
	case kindDraw:
		return fmt.Sprintf("%v draw %.4f", e.at, e.value)
	}
	return fmt.Sprintf("%v %v attempt=%d reason=%q %s>%s value=%.4f duration=%v", e.at, e.kind, e.attempt, e.reason, e.from, e.to, e.value, e.duration)
}

// harness is the suite's chain over a fake target.
type harness struct {
	fc    *clock.Fake
	start time.Time
	cc    *grpc.ClientConn
	call  grpc.UnaryInvoker
	ctx   context.Context

	mu  sync.Mutex
	log []entry

	// The target, touched only by the call under way.
	phase    phase
	rnd      *rand.Rand
	tick     int64 // second of fake time the capacity counts
	inTick   int
	attempts int // attempts that reached the target, in all
}

type scenario struct {
	phases       []phase
	withinRule   bool // breaker.FailuresWithin(5, 30s); else the default rule
	retryOverRE  bool // RESOURCE_EXHAUSTED is a retryable code too
	throttleSeed uint64
	retrySeed    uint64
	targetSeed   uint64
}

func overloadConn(t testing.TB) *grpc.ClientConn {
	t.Helper()
	cc, err := grpc.NewClient("passthrough:///overload", grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}

// newHarness builds the real chain with the scenario's options. The
// caller's context has a deadline a day away, so the deadline layer adds
// none and the retry layer never runs short of time.
func newHarness(t failer, cc *grpc.ClientConn, sc scenario) (*harness, context.CancelFunc) {
	t.Helper()
	// The fake time starts at the real one: the caller's deadline is a
	// real context deadline, read by the layers against the fake clock.
	start := time.Now()
	h := &harness{fc: clock.NewFake(start), start: start, cc: cc, rnd: rand.New(rand.NewPCG(sc.targetSeed, 1))}
	thrRand := rand.New(rand.NewPCG(sc.throttleSeed, 2))
	retryRand := rand.New(rand.NewPCG(sc.retrySeed, 3))
	opts := []Option{
		WithClock(h.fc),
		WithObserver(observe.Func(h.observe)),
		WithThrottle(throttle.WithRand(func() float64 {
			v := thrRand.Float64()
			h.record(entry{kind: kindDraw, value: v})
			return v
		})),
		WithRetry(retry.WithRand(retryRand.Float64)),
	}
	if sc.withinRule {
		opts = append(opts, WithBreaker(breaker.FailuresWithin(5, 30*time.Second)))
	}
	if sc.retryOverRE {
		r, err := policy.New(policy.WithMethod(overloadMethod, &failsoftv1.MethodPolicy{
			Retry: &failsoftv1.RetryPolicy{RetryableCodes: []string{"UNAVAILABLE", "RESOURCE_EXHAUSTED"}},
		}))
		if err != nil {
			t.Fatalf("policy.New: %v", err)
		}
		opts = append(opts, WithResolver(r))
	}
	ch, err := build(opts)
	if err != nil {
		t.Fatalf("build: %v", err)
	}
	h.call = chainInvoker(ch, h.invoke)
	ctx, cancel := context.WithDeadline(context.Background(), start.Add(24*time.Hour))
	h.ctx = ctx
	return h, cancel
}

type failer interface {
	Helper()
	Fatalf(format string, args ...any)
}

func (h *harness) now() time.Duration { return h.fc.Now().Sub(h.start) }

func (h *harness) record(e entry) {
	e.at = h.now()
	h.mu.Lock()
	h.log = append(h.log, e)
	h.mu.Unlock()
}

func (h *harness) observe(_ context.Context, e observe.Event) {
	switch e.Kind {
	case observe.AttemptStart, observe.AttemptEnd, observe.Backoff, observe.RetryStopped,
		observe.Hedge, observe.BudgetExhausted, observe.BreakerState, observe.BreakerRejected,
		observe.BulkheadRejected, observe.Throttled, observe.Fallback, observe.DeadlineFailFast:
		h.record(entry{kind: e.Kind, attempt: e.Attempt, reason: e.Reason, from: e.From, to: e.To, value: e.Value, duration: e.Duration})
	}
}

// invoke is the fake target: it answers at once, by the current phase,
// and sets the trailer the way grpc-go does, through grpc.Trailer.
func (h *harness) invoke(_ context.Context, _ string, _, _ any, _ *grpc.ClientConn, opts ...grpc.CallOption) error {
	h.attempts++
	code, pushback := h.answer()
	var tr metadata.MD
	if pushback != "" {
		tr = metadata.Pairs(retry.PushbackMetadata, pushback)
	}
	for _, o := range opts {
		if t, ok := o.(grpc.TrailerCallOption); ok {
			*t.TrailerAddr = tr
		}
	}
	h.record(entry{kind: kindAnswer, code: code, pushback: pushback})
	if code == codes.OK {
		return nil
	}
	return status.Errorf(code, "fake target: %v", h.phase.regime)
}

func (h *harness) answer() (codes.Code, string) {
	p := &h.phase
	switch p.regime {
	case overloaded:
		if p.capacity > 0 {
			if sec := int64(h.now() / time.Second); sec != h.tick {
				h.tick, h.inTick = sec, 0
			}
			if h.inTick < p.capacity {
				h.inTick++
				return codes.OK, ""
			}
			return p.code, p.pushback
		}
		if h.rnd.Float64() < p.reject {
			return p.code, p.pushback
		}
		return codes.OK, ""
	case dead:
		return p.deadCodes[h.rnd.IntN(len(p.deadCodes))], ""
	}
	return codes.OK, ""
}

// do makes one logical call and returns what happened and its error. The
// call runs on its own goroutine; whenever it waits on a timer of the
// fake clock (a backoff), the driver moves the clock on by clockStep, so
// nothing blocks and every run is the same.
func (h *harness) do() ([]entry, error) {
	h.mu.Lock()
	h.log = h.log[:0]
	h.mu.Unlock()
	done := make(chan error, 1)
	go func() {
		done <- h.call(h.ctx, overloadMethod, &policytestv1.PingRequest{}, &policytestv1.PingResponse{}, h.cc)
	}()
	for {
		waiting := make(chan struct{})
		go func() {
			h.fc.BlockUntil(1)
			close(waiting)
		}()
		select {
		case err := <-done:
			select {
			case <-waiting:
			default:
				// Release the watcher: a timer of our own wakes it.
				t := h.fc.NewTimer(time.Hour)
				<-waiting
				t.Stop()
			}
			h.mu.Lock()
			defer h.mu.Unlock()
			return append([]entry(nil), h.log...), err
		case <-waiting:
			h.fc.Advance(clockStep)
		}
	}
}

// ---- The model ----

// class is what an answer means, by the documented classification: the
// model's statement of what the layers should do, not a copy of how.
type class uint8

const (
	success class = iota
	overload
	failure
)

func classOf(code codes.Code, pushback string) class {
	switch {
	case code == codes.OK:
		return success
	case code == codes.ResourceExhausted || pushback != "":
		// Server pushback marks a live server shedding load, whatever the
		// code (issue 10: "UNAVAILABLE answered by a live server").
		return overload
	}
	return failure
}

// budgetModel is the retry budget with its defaults: over a window of 10
// one-second slots, 0.1 token per call plus a floor of 1 per second (10
// per window); a retry takes a token, a retry that succeeds gives it back.
type budgetModel struct {
	started      bool
	base         time.Duration
	calls, spent map[int64]int64
}

func (b *budgetModel) epoch(now time.Duration) int64 { return int64((now-b.base)/time.Second) + 1 }

func (b *budgetModel) deposit(now time.Duration) {
	if !b.started {
		b.started, b.base = true, now
		b.calls, b.spent = map[int64]int64{}, map[int64]int64{}
	}
	b.calls[b.epoch(now)]++
}

func (b *budgetModel) withdraw(now time.Duration) bool {
	e := b.epoch(now)
	var calls, spent int64
	for s := e - 9; s <= e; s++ {
		calls += b.calls[s]
		spent += b.spent[s]
	}
	if 0.1*float64(calls)+10-float64(spent) < 1 {
		return false
	}
	b.spent[e]++
	return true
}

func (b *budgetModel) refund(now time.Duration) { b.spent[b.epoch(now)]-- }

// throttleModel is the adaptive throttle with its defaults: K = 2, cap
// 0.9, a 2-minute window of 10 buckets.
type throttleModel struct {
	events []throttleEvent
}

type throttleEvent struct {
	bucket   int64
	accepted bool
}

const throttleBucket = 12 * time.Second

func (m *throttleModel) probability(now time.Duration) float64 {
	cur := int64(now / throttleBucket)
	var r, a float64
	kept := m.events[:0]
	for _, e := range m.events {
		if cur-e.bucket < 10 {
			kept = append(kept, e)
			r++
			if e.accepted {
				a++
			}
		}
	}
	m.events = kept
	excess := r - 2*a
	if excess <= 0 {
		return 0
	}
	return min(excess/(r+1), 0.9)
}

func (m *throttleModel) count(now time.Duration, accepted bool) {
	m.events = append(m.events, throttleEvent{int64(now / throttleBucket), accepted})
}

// breakerModel is one target's breaker, for calls one at a time: the
// seed's rule (5 failures within 30 s) or the default (half of the last
// 100 counted calls, at least 20), open for 5 s doubling to 1 min, 3
// probes.
type breakerModel struct {
	within   bool
	state    string
	failures []time.Duration // since the last close: within rule
	window   []bool          // last 100 counted calls, true = failed: rate rule
	until    time.Duration
	reopens  int
	probeOK  int
	opens    int
	openedAt []time.Duration
}

func (b *breakerModel) trip(now time.Duration) string {
	d := 5 * time.Second
	for i := 0; i < b.reopens && d < time.Minute; i++ {
		d *= 2
	}
	b.until = now + min(d, time.Minute)
	from := b.state
	b.state = "open"
	b.opens++
	b.openedAt = append(b.openedAt, now)
	return from + ">open"
}

// allow returns whether an attempt is let through, and the transition it
// causes, if any.
func (b *breakerModel) allow(now time.Duration) (bool, string) {
	if b.state != "open" {
		return true, ""
	}
	if now < b.until {
		return false, ""
	}
	b.state, b.probeOK = "half-open", 0
	return true, "open>half-open"
}

func (b *breakerModel) done(now time.Duration, c class) string {
	if b.state == "half-open" {
		switch c {
		case failure:
			b.reopens++
			return b.trip(now)
		case success:
			if b.probeOK++; b.probeOK >= 3 {
				b.state, b.reopens = "closed", 0
				b.failures, b.window = b.failures[:0], b.window[:0]
				return "half-open>closed"
			}
		}
		return ""
	}
	if c == overload {
		return "" // not counted at all
	}
	if !b.within {
		b.window = append(b.window, c == failure)
		if len(b.window) > 100 {
			b.window = b.window[1:]
		}
	}
	if c != failure {
		return ""
	}
	if b.within {
		b.failures = append(b.failures, now)
		if n := len(b.failures); n >= 5 && now-b.failures[n-5] < 30*time.Second {
			b.reopens = 0
			return b.trip(now)
		}
		return ""
	}
	failed := 0
	for _, f := range b.window {
		if f {
			failed++
		}
	}
	if len(b.window) >= 20 && float64(failed) >= 0.5*float64(len(b.window)) {
		b.reopens = 0
		return b.trip(now)
	}
	return ""
}

// model is what the suite should do with each attempt.
type model struct {
	sc       scenario
	budget   budgetModel
	throttle throttleModel
	breaker  breakerModel

	calls, attempts, retries int
	throttled, shedByBreaker int
	budgetStops, closes      int
	refunds                  int // retries that succeeded and gave their token back
	succeeded                int
	openedAfterAttempts      int // attempts that had reached the target at the first opening
}

func newModel(sc scenario) *model {
	return &model{sc: sc, breaker: breakerModel{within: sc.withinRule, state: "closed"}}
}

// cursor walks a call's log.
type cursor struct {
	t    failer
	log  []entry
	i    int
	call int
}

func (c *cursor) fail(format string, args ...any) {
	c.t.Helper()
	var b strings.Builder
	for i, e := range c.log {
		mark := "  "
		if i == c.i {
			mark = "> "
		}
		fmt.Fprintf(&b, "\n%s%v", mark, e)
	}
	c.t.Fatalf("call %d: %s; log:%s", c.call, fmt.Sprintf(format, args...), b.String())
}

func (c *cursor) peek() (entry, bool) {
	if c.i < len(c.log) {
		return c.log[c.i], true
	}
	return entry{}, false
}

func (c *cursor) expect(kind observe.Kind) entry {
	c.t.Helper()
	e, ok := c.peek()
	if !ok || e.kind != kind {
		c.fail("want %v", kind)
	}
	c.i++
	return e
}

func (c *cursor) transition(want string) {
	c.t.Helper()
	if want == "" {
		if e, ok := c.peek(); ok && e.kind == observe.BreakerState {
			c.fail("unexpected breaker transition")
		}
		return
	}
	e := c.expect(observe.BreakerState)
	if got := e.from + ">" + e.to; got != want {
		c.fail("breaker went %s, want %s", got, want)
	}
}

// check replays one logical call's log against the model: the throttle's
// draws and rejections, the breaker's admissions and transitions, the
// target's answers, the retry layer's decisions and waits, and the
// status the caller gets.
func (m *model) check(t failer, n int, err error, log []entry) {
	t.Helper()
	c := &cursor{t: t, log: log, call: n}
	m.calls++
	var want codes.Code
	paid := false // the current attempt is a retry that took a token
	for attempt := 1; ; attempt++ {
		start := c.expect(observe.AttemptStart)
		if start.attempt != attempt {
			c.fail("attempt %d started, want %d", start.attempt, attempt)
		}
		now := start.at
		if attempt == 1 {
			m.budget.deposit(now)
		}
		rejected := false
		// The throttle.
		if pr := m.throttle.probability(now); pr > 0 {
			d := c.expect(kindDraw)
			if d.value < pr {
				th := c.expect(observe.Throttled)
				if th.value != pr {
					c.fail("throttled with probability %v, want %v", th.value, pr)
				}
				m.throttle.count(now, false)
				m.throttled++
				rejected, want = true, codes.ResourceExhausted
			}
		} else if e, ok := c.peek(); ok && (e.kind == kindDraw || e.kind == observe.Throttled) {
			c.fail("throttle acted with probability 0")
		}
		// The breaker.
		if !rejected {
			ok, tr := m.breaker.allow(now)
			c.transition(tr)
			if !ok {
				c.expect(observe.BreakerRejected)
				m.shedByBreaker++
				rejected, want = true, codes.Unavailable
			}
		}
		// The target.
		var cl class
		var pushback string
		if !rejected {
			a := c.expect(kindAnswer)
			m.attempts++
			if attempt > 1 {
				m.retries++
			}
			cl, pushback, want = classOf(a.code, a.pushback), a.pushback, a.code
			tr := m.breaker.done(a.at, cl)
			switch {
			case tr == "half-open>closed":
				m.closes++
			case tr == "closed>open" && m.breaker.opens == 1:
				m.openedAfterAttempts = m.attempts
			}
			c.transition(tr)
			m.throttle.count(now, cl != overload)
		}
		end := c.expect(observe.AttemptEnd)
		// The retry layer's decision.
		if !rejected && cl == success {
			if paid {
				m.budget.refund(end.at)
				m.refunds++
			}
			break
		}
		stop := ""
		switch {
		case rejected:
			stop = "rejected"
		case want == codes.Unavailable || (want == codes.ResourceExhausted && m.sc.retryOverRE):
			if attempt >= 3 {
				stop = "attempts"
			}
		default:
			stop = "code"
		}
		paid = stop == "" && m.budget.withdraw(end.at)
		if stop == "" && !paid {
			if e := c.expect(observe.BudgetExhausted); e.attempt != attempt+1 {
				c.fail("budget exhausted for attempt %d, want %d", e.attempt, attempt+1)
			}
			stop = "budget"
			m.budgetStops++
		}
		if stop != "" {
			if e := c.expect(observe.RetryStopped); e.reason != stop {
				c.fail("retry stopped for %q, want %q", e.reason, stop)
			}
			break
		}
		b := c.expect(observe.Backoff)
		if b.attempt != attempt+1 {
			c.fail("backoff before attempt %d, want %d", b.attempt, attempt+1)
		}
		if pushback != "" {
			ms, _ := strconv.Atoi(pushback)
			if b.reason != "pushback" || b.duration != time.Duration(ms)*time.Millisecond {
				c.fail("backoff %v for %q, want the pushback of %sms", b.duration, b.reason, pushback)
			}
		} else if b.reason != "policy" || b.duration < 0 || b.duration >= 50*time.Millisecond<<(attempt-1) {
			c.fail("backoff %v for %q, want policy jitter below %v", b.duration, b.reason, 50*time.Millisecond<<(attempt-1))
		}
	}
	if c.i != len(log) {
		c.fail("unexpected entries at the end")
	}
	if got := status.Code(err); got != want {
		c.fail("call ended with %v (%v), want %v", got, err, want)
	}
	if want == codes.OK {
		m.succeeded++
	}
}

// runScenario plays the scenario, checks every call against the model,
// and calls perPhase after each phase with the model before and after it.
func runScenario(t failer, cc *grpc.ClientConn, sc scenario, perPhase func(i int, p phase, before, after *model, elapsed time.Duration)) *model {
	t.Helper()
	h, cancel := newHarness(t, cc, sc)
	defer cancel()
	m := newModel(sc)
	n := 0
	for i, p := range sc.phases {
		h.phase = p
		before := m.snapshot()
		t0 := h.now()
		for range p.calls {
			log, err := h.do()
			m.check(t, n, err, log)
			n++
			h.fc.Advance(p.gap)
		}
		if perPhase != nil {
			perPhase(i, p, before, m, h.now()-t0)
		}
	}
	if h.attempts != m.attempts {
		t.Fatalf("%d attempts reached the target, the model counted %d", h.attempts, m.attempts)
	}
	return m
}

// snapshot copies the model's counts and state.
func (m *model) snapshot() *model {
	c := *m
	c.breaker.window = append([]bool(nil), m.breaker.window...)
	c.breaker.failures = append([]time.Duration(nil), m.breaker.failures...)
	c.breaker.openedAt = append([]time.Duration(nil), m.breaker.openedAt...)
	c.throttle.events = append([]throttleEvent(nil), m.throttle.events...)
	return &c
}

// ---- Properties over random scenarios ----

func drawPhase(t *rapid.T, i int, unavailablePushback bool) phase {
	p := phase{
		regime: regime(rapid.IntRange(0, 2).Draw(t, fmt.Sprintf("regime%d", i))),
		calls:  rapid.IntRange(1, 60).Draw(t, fmt.Sprintf("calls%d", i)),
		gap: rapid.SampledFrom([]time.Duration{0, 10 * time.Millisecond, 100 * time.Millisecond,
			time.Second, 5 * time.Second, 7500 * time.Millisecond, 13 * time.Second}).Draw(t, fmt.Sprintf("gap%d", i)),
	}
	switch p.regime {
	case overloaded:
		if rapid.Bool().Draw(t, fmt.Sprintf("capacity?%d", i)) {
			p.capacity = rapid.IntRange(1, 5).Draw(t, fmt.Sprintf("capacity%d", i))
		} else {
			p.reject = rapid.SampledFrom([]float64{0.3, 0.5, 0.7, 0.9, 1}).Draw(t, fmt.Sprintf("reject%d", i))
		}
		p.code = codes.ResourceExhausted
		p.pushback = rapid.SampledFrom([]string{"", "0", "20", "250"}).Draw(t, fmt.Sprintf("pushback%d", i))
		if unavailablePushback && p.pushback != "" && rapid.Bool().Draw(t, fmt.Sprintf("unavailable%d", i)) {
			p.code = codes.Unavailable
		}
	case dead:
		p.deadCodes = rapid.SampledFrom([][]codes.Code{
			{codes.Unavailable}, {codes.DeadlineExceeded}, {codes.Unavailable, codes.DeadlineExceeded},
		}).Draw(t, fmt.Sprintf("dead%d", i))
	}
	return p
}

func drawScenario(t *rapid.T, unavailablePushback bool) scenario {
	sc := scenario{
		withinRule:   rapid.Bool().Draw(t, "withinRule"),
		retryOverRE:  rapid.Bool().Draw(t, "retryOverRE"),
		throttleSeed: rapid.Uint64().Draw(t, "throttleSeed"),
		retrySeed:    rapid.Uint64().Draw(t, "retrySeed"),
		targetSeed:   rapid.Uint64().Draw(t, "targetSeed"),
	}
	for i := range rapid.IntRange(1, 4).Draw(t, "phases") {
		sc.phases = append(sc.phases, drawPhase(t, i, unavailablePushback))
	}
	return sc
}

// TestOverloadModel checks every attempt of random sequences of healthy,
// overloaded and dead phases against the model: what the throttle draws
// and rejects (with the SRE formula's probability), what the breaker lets
// through and when it changes state, what the retry layer retries, waits
// and refuses for the budget, and what the caller gets. Over the whole run
// it also checks the four properties directly.
func TestOverloadModel(t *testing.T) {
	cc := overloadConn(t)
	var seen model
	rapid.Check(t, func(rt *rapid.T) {
		sc := drawScenario(rt, false)
		m := checkOverloadProperties(rt, cc, sc)
		seen.calls += m.calls
		seen.attempts += m.attempts
		seen.retries += m.retries
		seen.throttled += m.throttled
		seen.shedByBreaker += m.shedByBreaker
		seen.breaker.opens += m.breaker.opens
		seen.budgetStops += m.budgetStops
		seen.closes += m.closes
	})
	t.Logf("over all runs: %d calls, %d attempts reached the target (%d retries), %d throttled, %d shed by an open breaker, "+
		"%d retries refused by the budget, %d breaker openings, %d closings",
		seen.calls, seen.attempts, seen.retries, seen.throttled, seen.shedByBreaker, seen.budgetStops, seen.breaker.opens, seen.closes)
}

// TestOverloadModelUnavailablePushback is TestOverloadModel with targets
// that shed load with UNAVAILABLE and a pushback trailer, which issue 10
// and the throttle's documentation call overload: the chain's pushback
// marking makes the breaker and the throttle see them as overload.
func TestOverloadModelUnavailablePushback(t *testing.T) {
	cc := overloadConn(t)
	rapid.Check(t, func(rt *rapid.T) {
		sc := drawScenario(rt, true)
		checkOverloadProperties(rt, cc, sc)
	})
}

func checkOverloadProperties(t *rapid.T, cc *grpc.ClientConn, sc scenario) *model {
	allHealthy := true
	m := runScenario(t, cc, sc, func(i int, p phase, before, after *model, elapsed time.Duration) {
		allHealthy = allHealthy && p.regime == healthy
		attempts := after.attempts - before.attempts
		calls := after.calls - before.calls
		switch p.regime {
		case healthy, overloaded:
			// Neither a healthy nor an overloaded target opens the breaker.
			if after.breaker.opens > before.breaker.opens {
				t.Fatalf("phase %d (%v): the breaker opened", i, p)
			}
			// The retry budget bounds the retries that failed: 0.1 per
			// call (calls of earlier phases still in the window count
			// too) and a floor of 10 per 10 s window.
			futile := attempts - (after.refunds - before.refunds)
			limit := float64(calls) + 10 + 0.1*float64(after.calls) + elapsed.Seconds() + 1
			if float64(futile) > limit {
				t.Fatalf("phase %d (%v): %d attempts for %d calls in %v, the budget allows %.1f", i, p, attempts, calls, elapsed, limit)
			}
		case dead:
			// A dead target opens a closed breaker once it has seen enough
			// failures (unless the throttle, still shedding after an
			// overload, kept the attempts away).
			if before.breaker.state != "closed" || after.throttled > before.throttled || after.breaker.opens > before.breaker.opens {
				return
			}
			if sc.withinRule && p.gap <= 5*time.Second && attempts >= 5 {
				t.Fatalf("phase %d (%v): %d failed attempts within 30s, the breaker stayed closed", i, p, attempts)
			}
			successes := 0
			for _, f := range before.breaker.window {
				if !f {
					successes++
				}
			}
			if !sc.withinRule && attempts >= max(20, successes) {
				t.Fatalf("phase %d (%v): %d failed attempts after %d successes, the breaker stayed closed", i, p, attempts, successes)
			}
		}
	})
	// Healthy traffic to a target that was healthy all along is never
	// rejected locally, nor retried.
	if allHealthy && (m.throttled > 0 || m.shedByBreaker > 0 || m.retries > 0 || m.attempts != m.calls) {
		t.Fatalf("healthy target: %d throttled, %d shed by the breaker, %d retries, %d attempts for %d calls",
			m.throttled, m.shedByBreaker, m.retries, m.attempts, m.calls)
	}
	return m
}

// ---- The same regimes, one scenario each ----

// TestOverloadRegimes plays one fixed scenario per regime through the
// suite and checks the properties directly; it logs the figures: attempts
// per call under overload, and how long a dead target takes to open the
// breaker.
func TestOverloadRegimes(t *testing.T) {
	cc := overloadConn(t)
	const offered = 100 // calls per second: one every 10 ms
	for _, tc := range []struct {
		name        string
		phase       phase
		withinRule  bool
		retryOverRE bool

		allOK          bool    // every call succeeds, nothing is rejected locally
		open           bool    // the breaker opens
		attemptsToOpen int     // attempts the target sees before it opens, when open
		maxPerCall     float64 // attempts reaching the target per call, at most
	}{{
		name:  "healthy",
		phase: phase{regime: healthy, calls: 500, gap: 10 * time.Millisecond},
		allOK: true, maxPerCall: 1, withinRule: true,
	}, {
		name: "overloaded/1.5x capacity/RESOURCE_EXHAUSTED+pushback retried/seed rule",
		phase: phase{regime: overloaded, calls: 1000, gap: 10 * time.Millisecond,
			capacity: offered * 2 / 3, code: codes.ResourceExhausted, pushback: "20"},
		withinRule: true, retryOverRE: true, maxPerCall: 1.2,
	}, {
		name: "overloaded/1.5x capacity/RESOURCE_EXHAUSTED+pushback retried/default rule",
		phase: phase{regime: overloaded, calls: 1000, gap: 10 * time.Millisecond,
			capacity: offered * 2 / 3, code: codes.ResourceExhausted, pushback: "20"},
		retryOverRE: true, maxPerCall: 1.2,
	}, {
		name: "overloaded/1.5x capacity/UNAVAILABLE+pushback/seed rule",
		phase: phase{regime: overloaded, calls: 1000, gap: 10 * time.Millisecond,
			capacity: offered * 2 / 3, code: codes.Unavailable, pushback: "20"},
		withinRule: true, maxPerCall: 1.2,
	}, {
		name: "overloaded/1.5x capacity/UNAVAILABLE+pushback/default rule",
		phase: phase{regime: overloaded, calls: 1000, gap: 10 * time.Millisecond,
			capacity: offered * 2 / 3, code: codes.Unavailable, pushback: "20"},
		maxPerCall: 1.2,
	}, {
		name: "overloaded/4x capacity/RESOURCE_EXHAUSTED retried/seed rule",
		phase: phase{regime: overloaded, calls: 1000, gap: 10 * time.Millisecond,
			capacity: offered / 4, code: codes.ResourceExhausted},
		withinRule: true, retryOverRE: true, maxPerCall: 1.2,
	}, {
		name: "overloaded/random 60%/RESOURCE_EXHAUSTED/default rule",
		phase: phase{regime: overloaded, calls: 1000, gap: 10 * time.Millisecond,
			reject: 0.6, code: codes.ResourceExhausted},
		maxPerCall: 1,
	}, {
		name:       "dead/UNAVAILABLE/seed rule",
		phase:      phase{regime: dead, calls: 100, gap: time.Second, deadCodes: []codes.Code{codes.Unavailable}},
		withinRule: true, open: true, attemptsToOpen: 5,
	}, {
		name:       "dead/DEADLINE_EXCEEDED/seed rule",
		phase:      phase{regime: dead, calls: 100, gap: time.Second, deadCodes: []codes.Code{codes.DeadlineExceeded}},
		withinRule: true, open: true, attemptsToOpen: 5,
	}, {
		name:  "dead/UNAVAILABLE/default rule",
		phase: phase{regime: dead, calls: 100, gap: time.Second, deadCodes: []codes.Code{codes.Unavailable}},
		open:  true, attemptsToOpen: 20,
	}, {
		name:  "dead/DEADLINE_EXCEEDED/default rule",
		phase: phase{regime: dead, calls: 100, gap: 100 * time.Millisecond, deadCodes: []codes.Code{codes.DeadlineExceeded}},
		open:  true, attemptsToOpen: 20,
	}} {
		t.Run(tc.name, func(t *testing.T) {
			sc := scenario{phases: []phase{tc.phase}, withinRule: tc.withinRule, retryOverRE: tc.retryOverRE,
				throttleSeed: 1, retrySeed: 2, targetSeed: 3}
			m := runScenario(t, cc, sc, nil)
			perCall := float64(m.attempts) / float64(m.calls)
			figures := fmt.Sprintf("%d calls, %d succeeded, %d attempts reached the target (%.3f per call, %d retries), "+
				"%d throttled, %d retries refused by the budget, %d shed by an open breaker, breaker opened %d times",
				m.calls, m.succeeded, m.attempts, perCall, m.retries, m.throttled, m.budgetStops, m.shedByBreaker, m.breaker.opens)
			if m.breaker.opens > 0 {
				figures += fmt.Sprintf(", first after %v and %d attempts", m.breaker.openedAt[0], m.openedAfterAttempts)
			}
			t.Log(figures)
			if tc.allOK && (m.succeeded != m.calls || m.throttled+m.shedByBreaker+m.retries > 0) {
				t.Errorf("healthy target: want every call to succeed at the first attempt")
			}
			if !tc.open && m.breaker.opens > 0 {
				t.Errorf("the breaker opened; an overloaded target must not open it")
			}
			if tc.open && (m.breaker.opens == 0 || m.openedAfterAttempts != tc.attemptsToOpen) {
				t.Errorf("want the breaker open after %d failed attempts", tc.attemptsToOpen)
			}
			if !tc.open && perCall > tc.maxPerCall {
				t.Errorf("%.3f attempts per call reached the target, want at most %v", perCall, tc.maxPerCall)
			}
		})
	}
}

// TestOverloadUnavailablePushbackKeepsBreakerClosed: a server that sheds
// load with UNAVAILABLE and a grpc-retry-pushback-ms trailer is
// overloaded, not dead (issue 10; the throttle's and outcome's
// documentation), so the breaker must stay closed. The breaker and the
// throttle classify the error alone: the pushback marking inside them
// reads the trailer and marks the error as overload.
func TestOverloadUnavailablePushbackKeepsBreakerClosed(t *testing.T) {
	cc := overloadConn(t)
	h, cancel := newHarness(t, cc, scenario{withinRule: true, throttleSeed: 1, retrySeed: 2, targetSeed: 3})
	defer cancel()
	h.phase = phase{regime: overloaded, capacity: 66, code: codes.Unavailable, pushback: "20"}
	opens, ok := 0, 0
	for i := range 1000 {
		log, err := h.do()
		if err == nil {
			ok++
		}
		for _, e := range log {
			if e.kind == observe.BreakerState && e.to == "open" {
				if opens++; opens == 1 {
					t.Errorf("call %d: the breaker opened (%s) under an overload answered with UNAVAILABLE and pushback", i, e.reason)
				}
			}
		}
		h.fc.Advance(10 * time.Millisecond)
	}
	if opens > 0 {
		t.Logf("the breaker opened %d times in 1000 calls; %d calls succeeded", opens, ok)
	}
}
