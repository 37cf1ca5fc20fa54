package breaker_test

import (
	"errors"
	"fmt"
	"math"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"pgregory.net/rapid"

	"github.com/failsoft/failsoft/interceptors/breaker"
	"github.com/failsoft/failsoft/interceptors/outcome"
)

// modelConfig is a random breaker configuration, given to the real breaker
// as options and read directly by the model.
type modelConfig struct {
	consecutive   int
	withinN       int
	withinD       time.Duration
	failureRate   float64
	slowRate      float64
	slowThreshold time.Duration
	countWindow   int
	timeWindow    time.Duration
	minCalls      int
	probes        int
	openFor, max  time.Duration
	deadAfter     int
	deadSpan      time.Duration
}

func drawConfig(t *rapid.T) modelConfig {
	var c modelConfig
	for c.consecutive == 0 && c.withinN == 0 && c.failureRate == 0 && c.slowRate == 0 {
		if rapid.Bool().Draw(t, "consecutive?") {
			c.consecutive = rapid.IntRange(1, 6).Draw(t, "consecutive")
		}
		if rapid.Bool().Draw(t, "within?") {
			c.withinN = rapid.IntRange(1, 5).Draw(t, "withinN")
			c.withinD = time.Duration(rapid.IntRange(1, 20).Draw(t, "withinD")) * time.Second
		}
		if rapid.Bool().Draw(t, "rate?") {
			c.failureRate = rapid.SampledFrom([]float64{0.2, 0.5, 0.8, 1}).Draw(t, "failureRate")
		}
		if rapid.Bool().Draw(t, "slow?") {
			c.slowRate = rapid.SampledFrom([]float64{0.3, 0.5, 1}).Draw(t, "slowRate")
			c.slowThreshold = time.Duration(rapid.IntRange(1, 3).Draw(t, "slowThreshold")) * time.Second
		}
	}
	if c.failureRate > 0 || c.slowRate > 0 {
		if rapid.Bool().Draw(t, "countWindow?") {
			c.countWindow = rapid.IntRange(1, 20).Draw(t, "countWindow")
			c.minCalls = rapid.IntRange(1, c.countWindow).Draw(t, "minCalls")
		} else {
			c.timeWindow = time.Duration(rapid.IntRange(10, 60).Draw(t, "timeWindow")) * time.Second
			c.minCalls = rapid.IntRange(1, 10).Draw(t, "minCalls")
		}
	}
	c.deadAfter = rapid.SampledFrom([]int{0, 2, 5, breaker.DefaultDeadAfter}).Draw(t, "deadAfter")
	c.deadSpan = rapid.SampledFrom([]time.Duration{0, breaker.DefaultDeadSpan, time.Second, 5 * time.Second}).Draw(t, "deadSpan")
	c.probes = rapid.IntRange(1, 3).Draw(t, "probes")
	c.openFor = time.Duration(rapid.IntRange(1, 10).Draw(t, "openFor")) * time.Second
	c.max = c.openFor * time.Duration(rapid.IntRange(1, 5).Draw(t, "maxFactor"))
	return c
}

func (c modelConfig) options() []breaker.Option {
	opts := []breaker.Option{breaker.HalfOpenProbes(c.probes), breaker.OpenFor(c.openFor, c.max)}
	if c.deadAfter != breaker.DefaultDeadAfter || c.deadSpan != breaker.DefaultDeadSpan {
		opts = append(opts, breaker.DeadAfter(c.deadAfter, c.deadSpan))
	}
	if c.consecutive > 0 {
		opts = append(opts, breaker.ConsecutiveFailures(c.consecutive))
	}
	if c.withinN > 0 {
		opts = append(opts, breaker.FailuresWithin(c.withinN, c.withinD))
	}
	if c.failureRate > 0 {
		opts = append(opts, breaker.FailureRate(c.failureRate))
	}
	if c.slowRate > 0 {
		opts = append(opts, breaker.SlowCallRate(c.slowRate, c.slowThreshold))
	}
	if c.countWindow > 0 {
		opts = append(opts, breaker.CountWindow(c.countWindow))
	}
	if c.timeWindow > 0 {
		opts = append(opts, breaker.TimeWindow(c.timeWindow))
	}
	if c.minCalls > 0 {
		opts = append(opts, breaker.MinimumCalls(c.minCalls))
	}
	return opts
}

// model is the reference: it keeps every recorded outcome since the
// breaker last closed and recomputes each rule from scratch.
type model struct {
	c        modelConfig
	now      time.Duration
	state    breaker.State
	until    time.Duration
	reopens  int
	recs     []rec
	consec   int
	dead     int           // failed attempts in a row, for DeadAfter
	deadFrom time.Duration // when the first of them ended
	ok       int
	admitted int
}

type rec struct {
	t          time.Duration
	fail, slow bool
}

// call returns whether the call is rejected.
func (m *model) call(class outcome.Class, dur time.Duration) bool {
	if m.state == breaker.Open {
		if m.now < m.until {
			return true
		}
		m.state, m.ok, m.admitted = breaker.HalfOpen, 0, 0
	}
	m.now += dur
	slow := m.c.slowThreshold > 0 && dur >= m.c.slowThreshold
	if m.state == breaker.HalfOpen {
		switch {
		case class == outcome.Failure || (class == outcome.Success && slow):
			m.reopens++
			m.open()
		case class == outcome.Success:
			m.ok++
			if m.ok >= m.c.probes {
				m.state, m.recs, m.consec, m.dead, m.reopens = breaker.Closed, nil, 0, 0, 0
			}
		}
		return false
	}
	fail := class == outcome.Failure
	if !fail {
		m.dead = 0
	} else {
		if m.dead == 0 {
			m.deadFrom = m.now
		}
		if m.dead++; m.c.deadAfter > 0 && m.dead >= m.c.deadAfter && m.now-m.deadFrom >= m.c.deadSpan {
			m.reopens = 0
			m.open()
			return false
		}
	}
	if class != outcome.Success && !fail {
		return false
	}
	m.recs = append(m.recs, rec{m.now, fail, slow})
	if fail {
		m.consec++
	} else {
		m.consec = 0
	}
	if !fail && !slow {
		return false
	}
	trip := fail && m.c.consecutive > 0 && m.consec >= m.c.consecutive
	if fail && m.c.withinN > 0 {
		// The calls within d among the last max(100, n/0.8), of which n
		// and 80% failed.
		req, n := 0, 0
		for _, r := range m.recs[max(0, len(m.recs)-max(100, int(math.Ceil(float64(m.c.withinN)/0.8)))):] {
			if m.now-r.t < m.c.withinD {
				req++
				if r.fail {
					n++
				}
			}
		}
		trip = trip || (n >= m.c.withinN && float64(n) >= 0.8*float64(req))
	}
	req, f, s := m.window()
	if req > 0 && req >= m.c.minCalls {
		trip = trip || (m.c.failureRate > 0 && float64(f) >= m.c.failureRate*float64(req))
		trip = trip || (m.c.slowRate > 0 && float64(s) >= m.c.slowRate*float64(req))
	}
	if trip {
		m.reopens = 0
		m.open()
	}
	return false
}

func (m *model) open() {
	d := m.c.openFor
	for i := 0; i < m.reopens && d < m.c.max; i++ {
		d *= 2
	}
	m.state, m.until, m.dead = breaker.Open, m.now+min(d, m.c.max), 0
}

// window returns the sliding window's counts.
func (m *model) window() (requests, failures, slow int) {
	var in []rec
	switch {
	case m.c.countWindow > 0:
		in = m.recs[max(0, len(m.recs)-m.c.countWindow):]
	case m.c.timeWindow > 0:
		width := m.c.timeWindow / 10
		e := m.now / width
		for _, r := range m.recs {
			if b := r.t / width; b > e-10 && b <= e {
				in = append(in, r)
			}
		}
	}
	for _, r := range in {
		requests++
		if r.fail {
			failures++
		}
		if r.slow {
			slow++
		}
	}
	return
}

func TestModel(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		c := drawConfig(rt)
		h := newHarness(t, c.options()...)
		m := &model{c: c}
		codesDrawn := []codes.Code{codes.OK, codes.OK, codes.Unavailable, codes.Internal, codes.DeadlineExceeded, codes.ResourceExhausted, codes.NotFound, codes.Canceled}
		durations := []time.Duration{0, 0, 500 * time.Millisecond, time.Second, 2 * time.Second, 4 * time.Second}
		rt.Repeat(map[string]func(*rapid.T){
			"call": func(rt *rapid.T) {
				code := rapid.SampledFrom(codesDrawn).Draw(rt, "code")
				dur := rapid.SampledFrom(durations).Draw(rt, "dur")
				sent := h.sent
				err := h.call(code, dur)
				rejected := errors.Is(err, breaker.ErrOpen)
				if rejected == (h.sent != sent) {
					rt.Fatalf("rejected=%v but sent %d", rejected, h.sent-sent)
				}
				if want := m.call(outcome.Default.Code(code), dur); rejected != want {
					rt.Fatalf("rejected=%v, model says %v (model state %v, now %v)", rejected, want, m.state, m.now)
				}
				if rejected {
					// A rejected call takes no time.
					return
				}
			},
			"advance": func(rt *rapid.T) {
				d := rapid.SampledFrom([]time.Duration{100 * time.Millisecond, time.Second, 3 * time.Second, 10 * time.Second, 40 * time.Second}).Draw(rt, "advance")
				h.clk.Advance(d)
				m.now += d
			},
			"": func(rt *rapid.T) {
				got := h.state()
				if got != m.state {
					rt.Fatalf("state %v, model %v (now %v)", got, m.state, m.now)
				}
				snaps := h.ic.Snapshots()
				if len(snaps) == 0 || got != breaker.Closed {
					return
				}
				n := snaps[0].Counts
				if int(n.ConsecutiveFailures) != m.consec {
					rt.Fatalf("consecutive failures %d, model %d", n.ConsecutiveFailures, m.consec)
				}
				if c.countWindow > 0 || c.timeWindow > 0 {
					req, f, s := m.window()
					if got, want := fmt.Sprint(n.Requests, n.Failures, n.SlowCalls), fmt.Sprint(req, f, s); got != want {
						rt.Fatalf("window counts %s, model %s", got, want)
					}
				}
			},
		})
	})
}

// TestOverloadNeverOpens: whatever the configuration, a server that only
// sheds load (RESOURCE_EXHAUSTED) among successes never opens the breaker,
// while a dead one (UNAVAILABLE) always does.
func TestOverloadNeverOpens(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		c := drawConfig(rt)
		h := newHarness(t, c.options()...)
		n := rapid.IntRange(1, 200).Draw(rt, "calls")
		for i := range n {
			code := codes.ResourceExhausted
			if rapid.Bool().Draw(rt, fmt.Sprint("ok", i)) {
				code = codes.OK
			}
			dur := time.Duration(0)
			if c.slowThreshold > 0 {
				dur = c.slowThreshold / 2
			}
			if err := h.call(code, dur); errors.Is(err, breaker.ErrOpen) {
				rt.Fatalf("call %d rejected", i)
			}
			h.clk.Advance(time.Duration(rapid.IntRange(0, 2000).Draw(rt, fmt.Sprint("step", i))) * time.Millisecond)
		}
		h.wantState(breaker.Closed)
		if c.consecutive == 0 && c.withinN == 0 && c.failureRate == 0 {
			return // only the slow-call rule, which failures alone do not trip
		}
		// A dead target: enough failures, close together, trip any failure
		// rule once the windows forgot the successes.
		h.clk.Advance(max(c.timeWindow, c.withinD))
		for range max(c.consecutive, c.withinN, c.countWindow, c.minCalls, 1) {
			h.call(codes.Unavailable, 0)
		}
		h.wantState(breaker.Open)
	})
}
