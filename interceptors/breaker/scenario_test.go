package breaker_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"pgregory.net/rapid"

	"github.com/failsoft/failsoft/interceptors/breaker"
	"github.com/failsoft/failsoft/interceptors/clock"
	"github.com/failsoft/failsoft/interceptors/internal/testserver"
	"github.com/failsoft/failsoft/interceptors/outcome"
	"github.com/failsoft/failsoft/interceptors/throttle"
	"github.com/failsoft/failsoft/internal/chain"
)

// The scenarios run logical calls through a stand-in for the retry layer,
// the adaptive throttle and the breaker, in the suite's order, against a
// simulated server, on a fake clock and seeded randomness, and check what
// the caller and the server see in each failure mode.

// Methods of the simulated target; all retry UNAVAILABLE by default.
var scenarioMethods = []string{plainMethod, otherMethod, "/failsoft.policytest.v1.PlainService/NoSideEffects"}

// server answers an attempt at time at (since the start) for method.
type server func(at time.Duration, method string, r *rand.Rand) error

func serverError(code codes.Code) error { return status.Error(code, "from the server") }

func dead(time.Duration, string, *rand.Rand) error { return serverError(codes.Unavailable) }

func flaky(p float64) server {
	return func(_ time.Duration, _ string, r *rand.Rand) error {
		if r.Float64() < p {
			return serverError(codes.Unavailable)
		}
		return nil
	}
}

// overloaded is a server offered 1.5 times what it can serve, which
// rejects the excess at once with the given signal.
func overloaded(signal func() error) server {
	return func(_ time.Duration, _ string, r *rand.Rand) error {
		if r.Float64() < 1.0/3 {
			return signal()
		}
		return nil
	}
}

var overloadSignals = map[string]func() error{
	"RESOURCE_EXHAUSTED": func() error { return serverError(codes.ResourceExhausted) },
	// What the pushback layer makes of an answer with a pushback trailer.
	"pushback":    func() error { return outcome.MarkOverloaded(serverError(codes.Unavailable)) },
	"UNAVAILABLE": func() error { return serverError(codes.Unavailable) },
}

// scenario is one run: its setup, and what was seen.
type scenario struct {
	clk     *clock.Fake
	start   time.Time
	br      *breaker.Interceptor
	unaries *chain.Unaries
	cc      *grpc.ClientConn
	rnd     *rand.Rand
	server  server

	// The stand-in for the retry layer: three attempts, and a budget of
	// retries earning a fifth of a token per call, at most 10.
	tokens float64
	call   func(method string) bool

	calls, ok, attempts, rejectedByBreaker, throttled int
	opens                                             int
	firstOpen                                         time.Duration // when a breaker first opened from closed
	lastFailure                                       time.Duration // when the latest call failed
}

// retryStandIn sets chain.State.MayRetry as the retry layer does.
type retryStandIn struct{ mayRetry *bool }

func (l retryStandIn) Unary(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, next chain.UnaryNext, opts ...grpc.CallOption) error {
	next.MayRetry = *l.mayRetry
	return next.Invoke(ctx, method, req, reply, cc, opts...)
}

func newScenario(t *rapid.T, cc *grpc.ClientConn, srv server, opts ...breaker.Option) *scenario {
	seed := rapid.Uint64().Draw(t, "seed")
	s := &scenario{clk: clock.NewFake(time.Unix(1_000_000, 0)), rnd: rand.New(rand.NewPCG(seed, 1)), server: srv, tokens: 10, cc: cc}
	s.start = s.clk.Now()
	breakerRand := rand.New(rand.NewPCG(seed, 2))
	var err error
	s.br, err = breaker.New(append([]breaker.Option{breaker.WithClock(s.clk), breaker.WithRand(breakerRand.Float64),
		breaker.OnStateChange(func(c breaker.Change) {
			if c.From == breaker.Closed && c.To == breaker.Open {
				if s.opens == 0 {
					s.firstOpen = c.At.Sub(s.start)
				}
				s.opens++
			}
		})}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	throttleRand := rand.New(rand.NewPCG(seed, 3))
	th, err := throttle.New(throttle.WithClock(s.clk), throttle.WithRand(throttleRand.Float64))
	if err != nil {
		t.Fatal(err)
	}
	tl, err := chain.Lookup(chain.Throttle, th)
	if err != nil {
		t.Fatal(err)
	}
	bl, err := chain.Lookup(chain.Breaker, s.br)
	if err != nil {
		t.Fatal(err)
	}
	var mayRetry bool
	s.unaries = chain.NewUnaries(retryStandIn{&mayRetry}, tl.Unary, bl.Unary)
	s.call = func(method string) bool { return s.logicalCall(method, &mayRetry) }
	return s
}

func (s *scenario) now() time.Duration { return s.clk.Now().Sub(s.start) }

// logicalCall makes one call of up to three attempts and reports whether
// it succeeded.
func (s *scenario) logicalCall(method string, mayRetry *bool) bool {
	s.calls++
	s.tokens = min(10, s.tokens+0.2)
	final := func(_ context.Context, method string, _, _ any, _ *grpc.ClientConn, _ ...grpc.CallOption) error {
		s.attempts++
		return s.server(s.now(), method, s.rnd)
	}
	for attempt := 1; ; attempt++ {
		*mayRetry = attempt < 3 && s.tokens >= 1
		err := s.unaries.Start(final).Invoke(context.Background(), method, nil, nil, s.cc)
		if err == nil {
			s.ok++
			return true
		}
		if r, ok := outcome.AsRejection(err); ok {
			switch r.Layer {
			case "breaker":
				s.rejectedByBreaker++
			case throttle.Layer:
				s.throttled++
			}
		}
		retryable := status.Code(err) == codes.Unavailable && outcome.Default.Classify(err) != outcome.Ignored
		if !*mayRetry || !retryable {
			s.lastFailure = s.now()
			return false
		}
		s.tokens--
		s.clk.Advance(time.Duration(attempt) * 5 * time.Millisecond) // backoff
	}
}

// run makes calls at rate per second, round-robin over the methods, for d.
func (s *scenario) run(rate int, d time.Duration, methods ...string) {
	end := s.now() + d
	for i := 0; s.now() < end; i++ {
		s.call(methods[i%len(methods)])
		s.clk.Advance(time.Second / time.Duration(rate))
	}
}

// burst makes k calls to method that are in flight together and fail
// together with UNAVAILABLE at one instant, as when a server restarts or a
// proxy sheds the calls it holds. Each is a single attempt that no retry
// absorbs, so that the trip rules count every one.
func (s *scenario) burst(k int, method string) {
	for _, err := range failTogether(s.br.UnaryClientInterceptor(), s.cc, method, k) {
		s.calls++
		if errors.Is(err, breaker.ErrOpen) {
			s.rejectedByBreaker++
			continue
		}
		s.attempts++
	}
	s.lastFailure = s.now()
}

// TestScenarioBursts: a healthy target whose calls in flight fail together
// now and then, 20 to 50 at a time, keeps its breaker closed, and every
// call between the bursts succeeds.
func TestScenarioBursts(t *testing.T) {
	cc := testserver.Dial(t, "passthrough:///bursts")
	rapid.Check(t, func(rt *rapid.T) {
		s := newScenario(rt, cc, func(time.Duration, string, *rand.Rand) error { return nil }, drawRule(rt)...)
		rate := rapid.IntRange(250, 2000).Draw(rt, "rate")
		s.run(rate, time.Second, plainMethod)
		for i := range rapid.IntRange(1, 5).Draw(rt, "bursts") {
			s.burst(rapid.IntRange(20, 50).Draw(rt, fmt.Sprint("burst ", i)), plainMethod)
			calls, ok := s.calls, s.ok
			s.run(rate, time.Duration(rapid.IntRange(500, 2000).Draw(rt, fmt.Sprint("healthy ms ", i)))*time.Millisecond, plainMethod)
			if s.ok-ok != s.calls-calls {
				rt.Fatalf("burst %d: %d of the %d calls after it failed", i, s.calls-calls-(s.ok-ok), s.calls-calls)
			}
		}
		if s.opens != 0 || s.rejectedByBreaker != 0 {
			rt.Fatalf("the breaker opened %d times and rejected %d calls", s.opens, s.rejectedByBreaker)
		}
	})
}

// TestScenarioDeadTargetWithinSpan: a target that dies after a healthy
// history opens its breaker at the first failed attempt that is both the
// 20th of the run or later and DefaultDeadSpan or more after its first:
// well under a second at 100 calls a second and more.
func TestScenarioDeadTargetWithinSpan(t *testing.T) {
	cc := testserver.Dial(t, "passthrough:///dies")
	rapid.Check(t, func(rt *rapid.T) {
		healthy := time.Duration(rapid.IntRange(1, 5).Draw(rt, "healthy seconds")) * time.Second
		var failed []time.Duration // when each attempt of the outage ended
		srv := func(at time.Duration, _ string, _ *rand.Rand) error {
			if at < healthy {
				return nil
			}
			failed = append(failed, at)
			return serverError(codes.Unavailable)
		}
		rate := rapid.IntRange(100, 2000).Draw(rt, "rate")
		s := newScenario(rt, cc, srv, drawRule(rt)...)
		s.run(rate, healthy+time.Second, plainMethod)
		want := time.Duration(-1)
		for i, at := range failed {
			if i+1 >= breaker.DefaultDeadAfter && at-failed[0] >= breaker.DefaultDeadSpan {
				want = at
				break
			}
		}
		if s.opens == 0 || s.firstOpen != want {
			rt.Fatalf("the breaker opened %d times, first at %v; want it open at %v", s.opens, s.firstOpen, want)
		}
		if took := s.firstOpen - failed[0]; took > 250*time.Millisecond {
			rt.Fatalf("the breaker opened %v after the first failure, want within 250ms", took)
		}
	})
}

// TestScenarioDeadTarget: a target that answers nothing trips the breaker
// after the rule's calls, and then costs at most 0.05 attempts per call.
func TestScenarioDeadTarget(t *testing.T) {
	cc := testserver.Dial(t, "passthrough:///dead")
	rapid.Check(t, func(rt *rapid.T) {
		opts := drawRule(rt)
		s := newScenario(rt, cc, dead, opts...)
		rate := rapid.IntRange(500, 2000).Draw(rt, "rate")
		s.run(rate, 5*time.Second, plainMethod)
		if s.opens == 0 || s.ok != 0 {
			rt.Fatalf("opens %d, %d calls succeeded", s.opens, s.ok)
		}
		if perCall := float64(s.attempts) / float64(s.calls); perCall > 0.05 {
			rt.Fatalf("%d attempts for %d calls: %.3f per call, want <= 0.05", s.attempts, s.calls, perCall)
		}
	})
}

// TestScenarioPartialFailuresNeverOpen: 3 % and 20 % random UNAVAILABLE,
// and a server 1.5 times overloaded whatever signal its rejections carry,
// never open the breaker, with the default rule or the README's.
func TestScenarioPartialFailuresNeverOpen(t *testing.T) {
	servers := map[string]server{
		"3% flaky":      flaky(0.03),
		"20% transient": flaky(0.2),
	}
	for name, signal := range overloadSignals {
		servers["overload "+name] = overloaded(signal)
	}
	cc := testserver.Dial(t, "passthrough:///sick")
	for name, srv := range servers {
		t.Run(name, func(t *testing.T) {
			rapid.Check(t, func(rt *rapid.T) {
				s := newScenario(rt, cc, srv, drawRule(rt)...)
				s.run(1000, 2*time.Second, scenarioMethods...)
				if s.opens != 0 || s.rejectedByBreaker != 0 {
					rt.Fatalf("the breaker opened %d times and rejected %d of %d calls", s.opens, s.rejectedByBreaker, s.calls)
				}
			})
		})
	}
}

// TestScenarioOutageThenHeal: after an outage of any length, calls succeed
// again within a second of the heal, and the outage cost at most 0.05
// attempts per call.
func TestScenarioOutageThenHeal(t *testing.T) {
	cc := testserver.Dial(t, "passthrough:///heals")
	rapid.Check(t, func(rt *rapid.T) {
		outage := time.Duration(rapid.IntRange(2, 30).Draw(rt, "outage seconds")) * time.Second
		srv := func(at time.Duration, method string, r *rand.Rand) error {
			if at < outage {
				return serverError(codes.Unavailable)
			}
			return nil
		}
		s := newScenario(rt, cc, srv, drawRule(rt)...)
		s.run(1000, outage, plainMethod)
		if perCall := float64(s.attempts) / float64(s.calls); perCall > 0.05 {
			rt.Fatalf("during the outage: %.3f attempts per call, want <= 0.05", perCall)
		}
		s.run(1000, 3*time.Second, plainMethod)
		if took := s.lastFailure - outage; took > time.Second {
			rt.Fatalf("the last failure came %v after the heal, want within 1s", took)
		}
	})
}

// TestScenarioOutageAfterHealthyHistory: an outage of a target that served
// its recent calls (the window full of successes, which the rate rules
// weigh) still costs at most 0.05 attempts per call, at the bench's 250
// calls/s and more. (Any rule costs a few tens of attempts before it
// trips, and a probe per 0.5-1 s after: a larger share of fewer calls.)
func TestScenarioOutageAfterHealthyHistory(t *testing.T) {
	cc := testserver.Dial(t, "passthrough:///healthy-then-dead")
	rapid.Check(t, func(rt *rapid.T) {
		healthy := time.Duration(rapid.IntRange(1, 10).Draw(rt, "healthy seconds")) * time.Second
		outage := time.Duration(rapid.IntRange(3, 10).Draw(rt, "outage seconds")) * time.Second
		srv := func(at time.Duration, _ string, _ *rand.Rand) error {
			if at >= healthy && at < healthy+outage {
				return serverError(codes.Unavailable)
			}
			return nil
		}
		rate := rapid.IntRange(250, 1000).Draw(rt, "rate")
		s := newScenario(rt, cc, srv, drawRule(rt)...)
		s.run(rate, healthy, plainMethod)
		calls, attempts := s.calls, s.attempts
		s.run(rate, outage, plainMethod)
		if perCall := float64(s.attempts-attempts) / float64(s.calls-calls); perCall > 0.05 {
			rt.Fatalf("during the outage: %d attempts for %d calls, %.3f per call, want <= 0.05", s.attempts-attempts, s.calls-calls, perCall)
		}
		s.run(rate, 3*time.Second, plainMethod)
		if took := s.lastFailure - healthy - outage; took > time.Second {
			rt.Fatalf("the last failure came %v after the heal, want within 1s", took)
		}
	})
}

// TestScenarioOneBadMethod: one method that always fails does not cut off
// the target's healthy methods.
func TestScenarioOneBadMethod(t *testing.T) {
	cc := testserver.Dial(t, "passthrough:///one-bad")
	rapid.Check(t, func(rt *rapid.T) {
		bad := rapid.SampledFrom(scenarioMethods).Draw(rt, "bad method")
		srv := func(_ time.Duration, method string, _ *rand.Rand) error {
			if method == bad {
				return serverError(codes.Internal)
			}
			return nil
		}
		var opts []breaker.Option
		if rapid.Bool().Draw(rt, "README rule") {
			opts = append(opts, breaker.FailuresWithin(5, 30*time.Second))
		}
		s := newScenario(rt, cc, srv, opts...)
		s.run(300, 5*time.Second, scenarioMethods...)
		if healthy := s.calls * 2 / 3; s.ok < healthy {
			rt.Fatalf("%d of %d calls succeeded, want every call to the %d healthy methods", s.ok, s.calls, healthy)
		}
		if st, _ := s.br.State(s.cc.Target(), bad); st == breaker.Closed && s.opens == 0 {
			rt.Fatalf("the bad method's breaker never opened")
		}
	})
}

// drawRule draws the default rule or the README's, with a breaker per
// method (the default) or per target.
func drawRule(t *rapid.T) []breaker.Option {
	var opts []breaker.Option
	if rapid.Bool().Draw(t, "README rule") {
		opts = append(opts, breaker.FailuresWithin(5, 30*time.Second))
	}
	if rapid.Bool().Draw(t, "per target") {
		opts = append(opts, breaker.PerTarget())
	}
	return opts
}
