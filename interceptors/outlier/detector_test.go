package outlier

import (
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/failsoft/failsoft/interceptors/clock"
	"github.com/failsoft/failsoft/interceptors/outcome"
)

const (
	ok       = outcome.Success
	fail     = outcome.Failure
	overload = outcome.Overload
	ignored  = outcome.Ignored
)

// step is one thing that happens to a detector: n outcomes of class on
// endpoint ep, each taking latency, or, when ep is "", time passing by
// wait. want, when not nil, is the ejected endpoints after the step.
type step struct {
	ep      string
	others  []string // more endpoints with the same outcomes
	class   outcome.Class
	n       int
	latency time.Duration
	wait    time.Duration
	want    []string
}

func calls(ep string, class outcome.Class, n int) step { return step{ep: ep, class: class, n: n} }
func slowCalls(ep string, n int, latency time.Duration) step {
	return step{ep: ep, class: ok, n: n, latency: latency}
}
func wait(d time.Duration) step { return step{wait: d} }

// healthy gives each of eps ten successful calls: enough for its siblings
// to be compared with it by either failure rule.
func healthy(eps ...string) step { return step{ep: eps[0], others: eps[1:], class: ok, n: 10} }
func (s step) then(want ...string) step {
	s.want = append([]string{}, want...)
	return s
}

// every makes n rounds of one call on each endpoint, in order: what a
// round-robin child does.
func every(eps []string, n int, class func(ep string) (outcome.Class, time.Duration)) []step {
	var out []step
	for range n {
		for _, ep := range eps {
			c, l := class(ep)
			out = append(out, step{ep: ep, class: c, n: 1, latency: l})
		}
	}
	return out
}

func TestDetector(t *testing.T) {
	abc := []string{"a", "b", "c"}
	steady := func(slow string, latency time.Duration) func(string) (outcome.Class, time.Duration) {
		return func(ep string) (outcome.Class, time.Duration) {
			if ep == slow {
				return ok, latency
			}
			return ok, time.Millisecond
		}
	}
	tests := []struct {
		name      string
		endpoints []string
		cfg       func(*Config)
		steps     []step
	}{
		{
			name:      "five failures in a row eject, four do not",
			endpoints: abc,
			steps: []step{
				healthy("a", "b", "c"),
				calls("a", fail, 4).then(),
				calls("a", fail, 1).then("a"),
			},
		},
		{
			name:      "a success breaks the run",
			endpoints: abc,
			steps: []step{
				healthy("b", "c"),
				calls("a", fail, 4), calls("a", ok, 1), calls("a", fail, 4).then(),
			},
		},
		{
			name:      "the caller's errors and overload neither count nor break the run",
			endpoints: abc,
			steps: []step{
				healthy("b", "c"),
				calls("a", fail, 3), calls("a", ignored, 5), calls("a", overload, 20).then(),
				calls("a", fail, 2).then("a"),
				calls("b", overload, 50), calls("c", ignored, 50).then("a"),
			},
		},
		{
			name:      "one of three at most with the default 50%",
			endpoints: abc,
			steps: []step{
				healthy("b", "c"),
				calls("a", fail, 5).then("a"),
				// c still does better than b: only the share keeps b in.
				calls("b", fail, 10).then("a"),
				calls("c", fail, 10).then("a"),
			},
		},
		{
			name:      "one of two",
			endpoints: []string{"a", "b"},
			steps: []step{
				healthy("b"), calls("a", fail, 5).then("a"), calls("b", fail, 5).then("a"),
			},
		},
		{
			name:      "never the only one",
			endpoints: []string{"a"},
			steps: []step{
				calls("a", fail, 100).then(),
			},
		},
		{
			name:      "two of four at 50%",
			endpoints: []string{"a", "b", "c", "d"},
			steps: []step{
				healthy("b", "c", "d"),
				calls("a", fail, 5), calls("b", fail, 5), calls("c", fail, 5).then("a", "b"),
			},
		},
		{
			name:      "one of four at 10%: one may always go",
			endpoints: []string{"a", "b", "c", "d"},
			cfg:       func(c *Config) { c.MaxEjectionPercent = 10 },
			steps: []step{
				healthy("b", "c", "d"),
				calls("a", fail, 5), calls("b", fail, 5).then("a"),
			},
		},
		{
			name:      "none at 0%",
			endpoints: abc,
			cfg:       func(c *Config) { c.MaxEjectionPercent = 0 },
			steps: []step{
				healthy("b", "c"), calls("a", fail, 50).then(),
			},
		},
		{
			name:      "consecutive rule off",
			endpoints: abc,
			cfg:       func(c *Config) { c.ConsecutiveFailures = 0; c.FailureThreshold = 0 },
			steps: []step{
				healthy("b", "c"), calls("a", fail, 50).then(),
				wait(time.Second), healthy("b", "c").then(),
			},
		},
		{
			name:      "readmitted after the base time, ejected again by one failure, for twice as long",
			endpoints: abc,
			steps: []step{
				healthy("b", "c"), calls("a", fail, 5).then("a"),
				wait(9 * time.Second), calls("b", ok, 1).then("a"),
				wait(time.Second), calls("b", ok, 1).then(),
				healthy("b", "c"), calls("a", fail, 1).then("a"),
				wait(19 * time.Second), calls("b", ok, 1).then("a"),
				wait(time.Second), calls("b", ok, 1).then(),
			},
		},
		{
			name:      "a success on readmission ends probation",
			endpoints: abc,
			steps: []step{
				healthy("b", "c"), calls("a", fail, 5),
				wait(10 * time.Second), healthy("b", "c"), calls("a", ok, 1).then(),
				calls("a", fail, 4).then(),
				calls("a", fail, 1).then("a"),
			},
		},
		{
			name:      "an outage that lasts: ejections grow to the cap",
			endpoints: abc,
			cfg:       func(c *Config) { c.MaxEjectionTime = 25 * time.Second },
			steps: []step{
				healthy("b", "c"), calls("a", fail, 5),
				wait(10 * time.Second), healthy("b", "c"), calls("a", fail, 1).then("a"), // 20 s
				wait(20 * time.Second), healthy("b", "c"), calls("a", fail, 1).then("a"), // 25 s, capped
				wait(25*time.Second - time.Nanosecond), calls("b", ok, 1).then("a"),
				wait(time.Nanosecond), calls("b", ok, 1).then(),
			},
		},
		{
			name:      "the multiplier falls while the endpoint stays in",
			endpoints: abc,
			steps: []step{
				healthy("b", "c"), calls("a", fail, 5),
				wait(10 * time.Second), healthy("b", "c"), calls("a", fail, 1), // second ejection: 20 s
				wait(20 * time.Second), calls("a", ok, 1), // readmitted, multiplier 2
				wait(10 * time.Second), calls("a", ok, 1), // multiplier 1
				wait(10 * time.Second), calls("a", ok, 1), // multiplier 0
				healthy("b", "c"), calls("a", fail, 5).then("a"), // ejected for 10 s, not 30 s
				wait(10 * time.Second), calls("b", ok, 1).then(),
			},
		},
		{
			name:      "outcomes of calls picked before the ejection are not counted",
			endpoints: abc,
			steps: []step{
				healthy("b", "c"), calls("a", fail, 5), calls("a", ok, 3), calls("a", fail, 20),
				wait(10 * time.Second), healthy("b", "c"), calls("a", ok, 1).then(),
				calls("a", fail, 4).then(),
			},
		},
		{
			name:      "failure rate of 50% over an interval ejects",
			endpoints: abc,
			steps: append(append([]step{healthy("b", "c")}, every([]string{"a"}, 4, func(string) (outcome.Class, time.Duration) { return ok, 0 })...),
				calls("a", fail, 4), calls("a", ok, 1), calls("a", fail, 1).then(),
				wait(time.Second), calls("b", ok, 1).then("a")),
		},
		{
			name:      "failure rate of 40% does not",
			endpoints: abc,
			steps: []step{
				healthy("b", "c"),
				calls("a", fail, 2), calls("a", ok, 1), calls("a", fail, 2), calls("a", ok, 1),
				calls("a", fail, 2), calls("a", ok, 1), calls("a", fail, 2), calls("a", ok, 7),
				wait(time.Second), calls("b", ok, 1).then(),
			},
		},
		{
			name:      "failure rate below the minimum calls does not",
			endpoints: abc,
			steps: []step{
				healthy("b", "c"),
				calls("a", fail, 4), calls("a", ok, 1), calls("a", fail, 4),
				wait(time.Second), calls("b", ok, 1).then(),
			},
		},
		{
			name:      "the failure rate is counted afresh each interval",
			endpoints: abc,
			steps: []step{
				healthy("b", "c"),
				calls("a", fail, 4), calls("a", ok, 1), calls("a", fail, 4), calls("a", ok, 1),
				wait(time.Second), calls("b", ok, 1).then("a"),
				wait(10 * time.Second), calls("a", ok, 1), healthy("b", "c"),
				calls("a", fail, 4), calls("a", ok, 5),
				wait(time.Second), healthy("b", "c"), calls("a", fail, 4), calls("a", ok, 1),
				wait(time.Second), calls("b", ok, 1).then(),
			},
		},
		{
			name:      "50 ms against 1 ms siblings ejects after ten samples",
			endpoints: abc,
			steps: append(every(abc, 10, steady("c", 50*time.Millisecond)),
				wait(time.Second), calls("b", ok, 1).then("c"),
				wait(10*time.Second), calls("c", ok, 1).then()),
		},
		{
			name:      "nine samples are not enough",
			endpoints: abc,
			steps: append(every(abc, 9, steady("c", 50*time.Millisecond)),
				wait(time.Second), calls("b", ok, 1).then()),
		},
		{
			name:      "twice the siblings' latency is not enough",
			endpoints: abc,
			steps: []step{
				slowCalls("a", 10, 10*time.Millisecond), slowCalls("b", 10, 10*time.Millisecond),
				slowCalls("c", 10, 20*time.Millisecond),
				wait(time.Second), calls("b", ok, 1).then(),
			},
		},
		{
			name:      "five times, but under the minimum latency",
			endpoints: abc,
			cfg:       func(c *Config) { c.MinimumLatency = 10 * time.Millisecond },
			steps: []step{
				slowCalls("a", 10, time.Millisecond), slowCalls("b", 10, time.Millisecond),
				slowCalls("c", 10, 5*time.Millisecond),
				wait(time.Second), calls("b", ok, 1).then(),
			},
		},
		{
			name:      "one slow of two",
			endpoints: []string{"a", "b"},
			steps: []step{
				slowCalls("a", 10, 2*time.Millisecond), slowCalls("b", 10, 100*time.Millisecond),
				wait(time.Second), calls("a", ok, 1).then("b"),
			},
		},
		{
			name:      "a median ignores a few long calls",
			endpoints: abc,
			steps: []step{
				slowCalls("a", 10, time.Millisecond), slowCalls("b", 10, time.Millisecond),
				slowCalls("c", 10, time.Millisecond), slowCalls("c", 3, time.Minute),
				wait(time.Second), calls("b", ok, 1).then(),
			},
		},
		{
			name:      "all equally slow: nobody is an outlier",
			endpoints: abc,
			steps: append(every(abc, 10, func(string) (outcome.Class, time.Duration) { return ok, time.Second }),
				wait(time.Second), calls("b", ok, 1).then()),
		},
		{
			name:      "latency rule off",
			endpoints: abc,
			cfg:       func(c *Config) { c.LatencyRatio = 0 },
			steps: append(every(abc, 10, steady("c", time.Second)),
				wait(time.Second), calls("b", ok, 1).then()),
		},
		{
			name:      "two slow of three: the slower goes, the share holds",
			endpoints: abc,
			steps: []step{
				slowCalls("a", 10, time.Millisecond), slowCalls("b", 10, 50*time.Millisecond),
				slowCalls("c", 10, 80*time.Millisecond),
				wait(time.Second), calls("a", ok, 1).then("c"),
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { runSteps(t, tc.endpoints, tc.cfg, tc.steps) })
	}
}

// runSteps runs steps on a detector of endpoints on a fake clock,
// checking the ejected endpoints where a step says.
func runSteps(t *testing.T, endpoints []string, set func(*Config), steps []step) {
	t.Helper()
	cfg := DefaultConfig()
	if set != nil {
		set(&cfg)
	}
	clk := clock.NewFake(time.Unix(1_000_000, 0))
	d := newDetector(cfg, clk)
	d.update(cfg, endpoints)
	for i, s := range steps {
		if s.ep == "" {
			clk.Advance(s.wait)
		}
		for _, ep := range append([]string{s.ep}, s.others...) {
			for range s.n {
				d.record(d.endpoint(ep), s.class, clk.Now(), s.latency)
			}
		}
		if s.want == nil {
			continue
		}
		var got []string
		for _, k := range endpoints {
			if d.endpoint(k).ejected(clk.Now()) {
				got = append(got, k)
			}
		}
		if !slices.Equal(got, s.want) && (len(got) != 0 || len(s.want) != 0) {
			t.Fatalf("after step %d: ejected %q, want %q", i, got, s.want)
		}
	}
}

// pattern is a repeating sequence of outcomes, F for a failure and S for a
// success.
type pattern string

func (p pattern) at(i int) outcome.Class {
	if p[i%len(p)] == 'F' {
		return fail
	}
	return ok
}

// Failure patterns. fortyPercent fails 10 calls of 25, five of them in a
// row: often enough for the consecutive rule.
const (
	never        pattern = "S"
	always       pattern = "F"
	fortyPercent pattern = "FFFFFSSFSSFSSFSSFSSFSSSSS"
	sixtyPercent pattern = "FFFFFFSSSS"
)

// rounds makes n rounds of one call on each endpoint, in order, as a
// round-robin child does, each endpoint failing by its pattern (starting
// at a different place in it, so that runs do not line up), with 50 ms
// between rounds. When want is not nil, it checks after every round that
// want are the ejected endpoints.
func rounds(patterns map[string]pattern, n int, want []string) []step {
	eps := slices.Sorted(maps.Keys(patterns))
	var out []step
	for round := range n {
		for i, ep := range eps {
			out = append(out, calls(ep, patterns[ep].at(round+8*i), 1))
		}
		if want != nil {
			out[len(out)-1] = out[len(out)-1].then(want...)
		}
		out = append(out, wait(50*time.Millisecond))
	}
	return out
}

// check is a step that only checks that want are the ejected endpoints.
func check(want ...string) step { return wait(0).then(want...) }

// none is the want of a step after which no endpoint is ejected.
var none = []string{}

// slowRounds is n rounds, one second apart, in which b and c succeed once
// and a fails once: a client that sends each backend a call a second.
func slowRounds(n int) []step {
	var out []step
	for range n {
		out = append(out, calls("b", ok, 1), calls("c", ok, 1), calls("a", fail, 1), wait(time.Second))
	}
	return out
}

// TestDetectorSlowTraffic: siblings are compared over two intervals;
// with one call a second they never have five, unless the interval is
// longer.
func TestDetectorSlowTraffic(t *testing.T) {
	abc := []string{"a", "b", "c"}
	runSteps(t, abc, nil, append(slowRounds(30), check()))
	runSteps(t, abc, func(c *Config) { c.Interval = 5 * time.Second }, append(slowRounds(6), check("a")))
}

// TestDetectorFleet: a backend is ejected for failures only when most of
// its siblings do clearly better. A fleet that fails alike (overload shed
// as plain UNAVAILABLE) keeps every backend; one sick backend still goes.
// 200 rounds at 50 ms are ten intervals.
func TestDetectorFleet(t *testing.T) {
	abc := []string{"a", "b", "c"}
	tests := []struct {
		name      string
		endpoints []string
		steps     []step
	}{
		{
			name:      "three of three at 40% in runs of five: none",
			endpoints: abc,
			steps:     rounds(map[string]pattern{"a": fortyPercent, "b": fortyPercent, "c": fortyPercent}, 200, none),
		},
		{
			name:      "three of three at 60%, over the failure-rate threshold: none",
			endpoints: abc,
			steps:     rounds(map[string]pattern{"a": sixtyPercent, "b": sixtyPercent, "c": sixtyPercent}, 200, none),
		},
		{
			name:      "three of three failing every call: none",
			endpoints: abc,
			steps:     rounds(map[string]pattern{"a": always, "b": always, "c": always}, 200, none),
		},
		{
			name:      "one of three failing every call: it goes",
			endpoints: abc,
			// Its fifth failure comes before its siblings' fifth call: the
			// sixth ejects it.
			steps: slices.Concat(
				rounds(map[string]pattern{"a": always, "b": never, "c": never}, 5, none),
				rounds(map[string]pattern{"a": always, "b": never, "c": never}, 1, []string{"a"}),
			),
		},
		{
			name:      "one of three failing every call while the others shed 40%: it goes",
			endpoints: abc,
			steps: slices.Concat(
				rounds(map[string]pattern{"a": fortyPercent, "b": fortyPercent, "c": fortyPercent}, 40, none),
				rounds(map[string]pattern{"a": always, "b": fortyPercent, "c": fortyPercent}, 40, nil),
				[]step{check("a")},
			),
		},
		{
			// Most of the fleet fails: the failures are the fleet's, and
			// ejecting one of the two would put half its load on the only
			// healthy backend.
			name:      "two of three failing every call, one healthy: none",
			endpoints: abc,
			steps:     rounds(map[string]pattern{"a": always, "b": always, "c": never}, 200, none),
		},
		{
			name:      "two of three at 40%, one healthy: none",
			endpoints: abc,
			steps:     rounds(map[string]pattern{"a": fortyPercent, "b": fortyPercent, "c": never}, 200, none),
		},
		{
			name:      "two of four failing every call, two healthy: both go",
			endpoints: []string{"a", "b", "c", "d"},
			steps: append(rounds(map[string]pattern{"a": always, "b": always, "c": never, "d": never}, 6, nil),
				check("a", "b")),
		},
		{
			name:      "a failure on probation is weighed against a fleet that now fails too",
			endpoints: abc,
			steps: slices.Concat(
				[]step{healthy("a", "b", "c"), calls("a", fail, 5).then("a"), wait(10 * time.Second)},
				rounds(map[string]pattern{"b": "FS", "c": "FS"}, 10, none),
				[]step{calls("a", fail, 1).then()},
			),
		},
		{
			name:      "a failure on probation while the fleet is healthy ejects again",
			endpoints: abc,
			steps: []step{
				healthy("a", "b", "c"), calls("a", fail, 5).then("a"),
				wait(10 * time.Second), healthy("b", "c"),
				calls("a", fail, 1).then("a"),
			},
		},
		{
			name:      "siblings with too few calls say nothing",
			endpoints: abc,
			steps: []step{
				calls("b", ok, 4), calls("c", ok, 4), calls("a", fail, 10).then(),
				calls("b", ok, 1), calls("a", fail, 1).then("a"),
			},
		},
		{
			name:      "nor do ejected ones",
			endpoints: []string{"a", "b", "c", "d"},
			steps: []step{
				healthy("a", "b", "c", "d"),
				calls("a", fail, 5).then("a"),
				// b fails, c and d are healthy: b goes.
				calls("b", fail, 5).then("a", "b"),
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { runSteps(t, tc.endpoints, nil, tc.steps) })
	}
}
func TestDetectorUpdateKeepsRecords(t *testing.T) {
	cfg := DefaultConfig()
	clk := clock.NewFake(time.Unix(0, 0))
	d := newDetector(cfg, clk)
	d.update(cfg, []string{"a", "b", "c"})
	for range 5 {
		d.record(d.endpoint("b"), ok, clk.Now(), 0)
	}
	a := d.endpoint("a")
	for range 5 {
		d.record(a, fail, clk.Now(), 0)
	}
	d.update(cfg, []string{"a", "b", "d"})
	if d.endpoint("a") != a || !a.ejected(clk.Now()) {
		t.Fatal("an endpoint that stays must keep its record")
	}
	if d.endpoint("c") != nil || d.endpoint("d") == nil {
		t.Fatal("endpoints must follow the resolver")
	}
	// A record of a removed endpoint is ignored.
	d.update(cfg, []string{"b", "d"})
	d.record(a, fail, clk.Now(), 0)
	if d.endpoint("a") != nil {
		t.Fatal("a removed endpoint came back")
	}
}

func TestMedian(t *testing.T) {
	ms := func(v ...int) []time.Duration {
		out := make([]time.Duration, len(v))
		for i, x := range v {
			out[i] = time.Duration(x) * time.Millisecond
		}
		return out
	}
	for _, tc := range []struct {
		samples []time.Duration
		want    time.Duration
	}{
		{nil, 0},
		{ms(5), 5 * time.Millisecond},
		{ms(9, 1), 5 * time.Millisecond},
		{ms(3, 1, 2), 2 * time.Millisecond},
		{ms(100, 1, 1, 1), time.Millisecond},
	} {
		in := slices.Clone(tc.samples)
		if got := median(tc.samples); got != tc.want {
			t.Errorf("median(%v) = %v, want %v", tc.samples, got, tc.want)
		}
		if !slices.Equal(in, tc.samples) {
			t.Errorf("median reordered its input")
		}
	}
	for _, tc := range []struct {
		sorted []time.Duration
		skip   int
		want   time.Duration
	}{
		{ms(1, 2, 50), 2, 1500 * time.Microsecond},
		{ms(1, 2, 50), 0, 26 * time.Millisecond},
		{ms(1, 50), 1, time.Millisecond},
		{ms(1, 2, 3, 50), 3, 2 * time.Millisecond},
		{ms(7), 0, 0},
	} {
		if got := medianWithout(tc.sorted, tc.skip); got != tc.want {
			t.Errorf("medianWithout(%v, %d) = %v, want %v", tc.sorted, tc.skip, got, tc.want)
		}
	}
}

// TestSiblingsDoBetter: the comparison itself. Each endpoint is given by
// its calls and failures over its window (split between this interval and
// the last, which count alike) and whether it is ejected.
func TestSiblingsDoBetter(t *testing.T) {
	type rec struct {
		calls, failures int
		ejected         bool
	}
	for _, tc := range []struct {
		name     string
		e        rec
		siblings []rec
		minCalls int
		want     bool
	}{
		{"both siblings healthy", rec{5, 5, false}, []rec{{10, 0, false}, {10, 0, false}}, 5, true},
		{"siblings fail alike", rec{10, 4, false}, []rec{{10, 4, false}, {10, 4, false}}, 5, false},
		{"a sibling fails half as often", rec{10, 8, false}, []rec{{10, 4, false}}, 5, true},
		{"a sibling fails a bit more than half as often", rec{10, 8, false}, []rec{{10, 5, false}}, 5, false},
		{"one of two siblings healthy: not most", rec{10, 10, false}, []rec{{10, 10, false}, {10, 0, false}}, 5, false},
		{"two of three siblings healthy", rec{10, 10, false}, []rec{{10, 10, false}, {10, 0, false}, {10, 0, false}}, 5, true},
		{"no sibling with enough calls", rec{5, 5, false}, []rec{{4, 0, false}, {4, 0, false}}, 5, false},
		{"siblings without enough calls do not count", rec{5, 5, false}, []rec{{4, 4, false}, {5, 0, false}}, 5, true},
		{"ejected siblings do not count", rec{5, 5, false}, []rec{{10, 10, true}, {10, 0, false}}, 5, true},
		{"only ejected siblings", rec{5, 5, false}, []rec{{10, 0, true}}, 5, false},
		{"rates, not counts", rec{100, 10, false}, []rec{{20, 1, false}}, 5, true},
		{"no siblings", rec{5, 5, false}, nil, 1, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clk := clock.NewFake(time.Unix(1_000_000, 0))
			d := newDetector(DefaultConfig(), clk)
			set := func(e *endpoint, r rec) {
				// Half in the previous interval, half in this one.
				e.prevCalls, e.prevFailures = r.calls/2, r.failures/2
				e.calls, e.failures = r.calls-r.calls/2, r.failures-r.failures/2
				if r.ejected {
					e.ejectedUntil.Store(clk.Now().Add(time.Minute).UnixNano())
				}
			}
			keys := []string{"e"}
			for i := range tc.siblings {
				keys = append(keys, string(rune('a'+i)))
			}
			d.update(d.cfg, keys)
			e := d.endpoint("e")
			set(e, tc.e)
			for i, r := range tc.siblings {
				set(d.endpoint(keys[i+1]), r)
			}
			if got := d.siblingsDoBetter(e, tc.minCalls, clk.Now()); got != tc.want {
				t.Errorf("siblingsDoBetter = %v, want %v", got, tc.want)
			}
		})
	}
}
