package chaos_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/failsoft/failsoft/interceptors/chaos"
	"github.com/failsoft/failsoft/interceptors/clock"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const (
	method  = "/p.Svc/Write"
	other   = "/p.Svc/Read"
	foreign = "/q.Other/Call"
)

func mustNew(t testing.TB, cfg chaos.Config, opts ...chaos.Option) *chaos.Injector {
	t.Helper()
	inj, err := chaos.New(append([]chaos.Option{chaos.WithSeed(7), chaos.WithConfig(cfg)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return inj
}

func on(rules ...chaos.Rule) chaos.Config { return chaos.Config{Enabled: true, Rules: rules} }

// serve runs one unary call to fullMethod through inj's server interceptor
// and reports the error and whether the handler ran.
func serve(inj *chaos.Injector, ctx context.Context, fullMethod string) (error, bool) {
	ran := false
	_, err := inj.UnaryServerInterceptor()(ctx, nil, &grpc.UnaryServerInfo{FullMethod: fullMethod}, func(context.Context, any) (any, error) {
		ran = true
		return "ok", nil
	})
	return err, ran
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  chaos.Config
		want string // substring of the error; empty for valid
	}{
		{"zero", chaos.Config{}, ""},
		{"full", on(chaos.Rule{Match: "*", Faults: chaos.Faults{ErrorRate: 0.5, ErrorCodes: []codes.Code{codes.Internal}, Latency: time.Millisecond,
			SlowLatency: time.Second, SlowFraction: 0.1, OutageEvery: time.Minute, OutageFor: time.Second, LostRate: 1, PushbackRate: 0.5, Pushback: time.Second}}), ""},
		{"service rule", on(chaos.Rule{Match: "/p.Svc/*"}), ""},
		{"method rule", on(chaos.Rule{Match: method}), ""},
		{"empty match", on(chaos.Rule{}), `match "" is not`},
		{"no leading slash", on(chaos.Rule{Match: "p.Svc/M"}), "is not"},
		{"wildcard service", on(chaos.Rule{Match: "/p.*/M"}), "is not"},
		{"nested", on(chaos.Rule{Match: "/a/b/c"}), "is not"},
		{"rate above 1", on(chaos.Rule{Match: "*", Faults: chaos.Faults{ErrorRate: 1.5}}), "error_rate 1.5 is outside [0, 1]"},
		{"negative rate", on(chaos.Rule{Match: "*", Faults: chaos.Faults{LostRate: -0.1}}), "lost_rate -0.1 is outside [0, 1]"},
		{"sum above 1", on(chaos.Rule{Match: "*", Faults: chaos.Faults{ErrorRate: 0.6, PushbackRate: 0.6}}), "exceeds 1"},
		{"negative latency", on(chaos.Rule{Match: "*", Faults: chaos.Faults{Latency: -time.Second}}), "latency -1s is negative"},
		{"outage without period", on(chaos.Rule{Match: "*", Faults: chaos.Faults{OutageFor: time.Second}}), "needs a positive outage_every"},
		{"outage longer than period", on(chaos.Rule{Match: "*", Faults: chaos.Faults{OutageFor: 2 * time.Second, OutageEvery: time.Second}}), "longer than outage_every"},
		{"OK as error code", on(chaos.Rule{Match: "*", Faults: chaos.Faults{ErrorCodes: []codes.Code{codes.OK}}}), "not an error code"},
		{"second rule named", on(chaos.Rule{Match: "*"}, chaos.Rule{Match: method, Faults: chaos.Faults{SlowFraction: 2}}), "rule 1 (/p.Svc/Write)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			if tc.want == "" {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate() = %v, want an error containing %q", err, tc.want)
			}
			if _, err := chaos.New(chaos.WithConfig(tc.cfg)); err == nil {
				t.Fatal("New accepted a bad config")
			}
			inj := mustNew(t, chaos.Config{})
			if err := inj.Set(tc.cfg); err == nil {
				t.Fatal("Set accepted a bad config")
			}
			if inj.Config().Enabled {
				t.Fatal("a refused config was applied")
			}
		})
	}
}

func TestOptionsNameTheBadOne(t *testing.T) {
	for _, tc := range []struct {
		opt  chaos.Option
		want string
	}{
		{chaos.WithClock(nil), "WithClock"},
		{chaos.WithMeterProvider(nil), "WithMeterProvider"},
		{chaos.WithConfig(on(chaos.Rule{Match: "x"})), "WithConfig"},
	} {
		if _, err := chaos.New(tc.opt); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("New(%s) = %v", tc.want, err)
		}
	}
}

// Until a config with Enabled arrives, and after it is switched off,
// every call runs untouched and nothing is counted.
func TestOffUnlessEnabled(t *testing.T) {
	down := chaos.Rule{Match: "*", Faults: chaos.Faults{Down: true}}
	inj, err := chaos.New()
	if err != nil {
		t.Fatal(err)
	}
	for _, step := range []struct {
		name string
		cfg  *chaos.Config
		down bool
	}{
		{"new", nil, false},
		{"rules but not enabled", &chaos.Config{Rules: []chaos.Rule{down}}, false},
		{"enabled", &chaos.Config{Enabled: true, Rules: []chaos.Rule{down}}, true},
		{"switched off", &chaos.Config{}, false},
	} {
		if step.cfg != nil {
			if err := inj.Set(*step.cfg); err != nil {
				t.Fatal(err)
			}
		}
		err, ran := serve(inj, context.Background(), method)
		if (err != nil) != step.down || ran == step.down {
			t.Errorf("%s: err %v, handler ran %v; want down=%v", step.name, err, ran, step.down)
		}
	}
	if c := inj.Counters(); c.Calls != 1 || c.Outage != 1 {
		t.Errorf("counters %+v, want only the enabled call counted", c)
	}
}

func TestRulesMatchFirst(t *testing.T) {
	inj := mustNew(t, on(
		chaos.Rule{Match: method}, // healthy: shields Write from the service rule
		chaos.Rule{Match: "/p.Svc/*", Faults: chaos.Faults{ErrorRate: 1, ErrorCodes: []codes.Code{codes.Internal}}},
	))
	for _, tc := range []struct {
		method string
		want   codes.Code
	}{{method, codes.OK}, {other, codes.Internal}, {foreign, codes.OK}, {"/p.Svc2/Read", codes.OK}} {
		err, _ := serve(inj, context.Background(), tc.method)
		if status.Code(err) != tc.want {
			t.Errorf("%s: %v, want %v", tc.method, err, tc.want)
		}
	}
	if c := inj.Counters(); c.Calls != 2 {
		t.Errorf("calls matched %d, want 2 (the foreign ones match no rule)", c.Calls)
	}
}

// Every fault kind, drawn from a seeded source: the status says what was
// injected, the counters agree with what callers saw, and the same seed
// gives the same run.
func TestFaultKindsSeeded(t *testing.T) {
	for _, tc := range []struct {
		name   string
		faults chaos.Faults
		// check is called with the tally of codes callers saw and the
		// counters; it returns a complaint or "".
		check func(seen map[codes.Code]int, ran int, c chaos.Counters) string
	}{
		{"errors", chaos.Faults{ErrorRate: 0.3, ErrorCodes: []codes.Code{codes.Unavailable, codes.Internal}},
			func(seen map[codes.Code]int, ran int, c chaos.Counters) string {
				if seen[codes.Unavailable] == 0 || seen[codes.Internal] == 0 || uint64(seen[codes.Internal]) != c.Errors["INTERNAL"] ||
					uint64(seen[codes.Unavailable]) != c.Errors["UNAVAILABLE"] || ran+seen[codes.Unavailable]+seen[codes.Internal] != 400 {
					return "errors of both codes, counted, and the rest handled"
				}
				if n := seen[codes.Unavailable] + seen[codes.Internal]; n < 80 || n > 160 {
					return "about 30% errors"
				}
				return ""
			}},
		{"down", chaos.Faults{Down: true}, func(seen map[codes.Code]int, ran int, c chaos.Counters) string {
			if seen[codes.Unavailable] != 400 || ran != 0 || c.Outage != 400 {
				return "every call UNAVAILABLE before the handler"
			}
			return ""
		}},
		{"pushback", chaos.Faults{PushbackRate: 0.5, Pushback: 30 * time.Millisecond}, func(seen map[codes.Code]int, ran int, c chaos.Counters) string {
			if uint64(seen[codes.ResourceExhausted]) != c.Pushback || c.Pushback < 150 || c.Pushback > 250 || ran != 400-int(c.Pushback) {
				return "about half RESOURCE_EXHAUSTED, counted"
			}
			return ""
		}},
		{"lost", chaos.Faults{LostRate: 0.25}, func(seen map[codes.Code]int, ran int, c chaos.Counters) string {
			if ran != 400 || uint64(seen[codes.Unavailable]) != c.Lost || c.Lost < 60 || c.Lost > 140 {
				return "every handler ran, about a quarter of the responses lost, counted"
			}
			return ""
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			run := func() ([]codes.Code, map[codes.Code]int, int, chaos.Counters) {
				inj := mustNew(t, on(chaos.Rule{Match: "*", Faults: tc.faults}))
				var seq []codes.Code
				seen := map[codes.Code]int{}
				ran := 0
				for range 400 {
					err, r := serve(inj, context.Background(), method)
					if r {
						ran++
					}
					if err != nil {
						if !chaos.IsInjected(err) {
							t.Fatalf("%v is not recognisable as injected", err)
						}
						seen[status.Code(err)]++
					}
					seq = append(seq, status.Code(err))
				}
				return seq, seen, ran, inj.Counters()
			}
			seq1, seen, ran, c := run()
			seq2, _, _, _ := run()
			for i := range seq1 {
				if seq1[i] != seq2[i] {
					t.Fatalf("same seed, different decision at call %d: %v vs %v", i, seq1[i], seq2[i])
				}
			}
			if c.Calls != 400 {
				t.Errorf("calls %d, want 400", c.Calls)
			}
			if msg := tc.check(seen, ran, c); msg != "" {
				t.Errorf("want %s; saw %v, handler ran %d times, counters %+v", msg, seen, ran, c)
			}
		})
	}
}

func TestOutageWindows(t *testing.T) {
	start := time.Unix(0, 0)
	clk := clock.NewFake(start)
	inj := mustNew(t, on(chaos.Rule{Match: "*", Faults: chaos.Faults{OutageEvery: 10 * time.Second, OutageFor: 2 * time.Second}}), chaos.WithClock(clk))
	for _, step := range []struct {
		at   time.Duration
		down bool
	}{{0, true}, {time.Second, true}, {2 * time.Second, false}, {9 * time.Second, false}, {10 * time.Second, true}, {12 * time.Second, false}} {
		clk.Advance(step.at - clk.Now().Sub(start))
		err, _ := serve(inj, context.Background(), method)
		if got := status.Code(err) == codes.Unavailable; got != step.down {
			t.Errorf("at %v: err = %v, want down=%v", step.at, err, step.down)
		}
	}
	if n := inj.Counters().Outage; n != 3 {
		t.Errorf("outage counter = %d, want 3", n)
	}
}

func TestLatencyAndSlowTail(t *testing.T) {
	clk := clock.NewFake(time.Unix(0, 0))
	inj := mustNew(t, on(chaos.Rule{Match: "*", Faults: chaos.Faults{Latency: 20 * time.Millisecond, SlowLatency: time.Second, SlowFraction: 1}}), chaos.WithClock(clk))
	done := make(chan error, 1)
	go func() { err, _ := serve(inj, context.Background(), method); done <- err }()
	clk.BlockUntil(1)
	clk.Advance(time.Second) // short of 1.02 s
	select {
	case err := <-done:
		t.Fatalf("call returned %v before its latency passed", err)
	default:
	}
	clk.Advance(20 * time.Millisecond)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if c := inj.Counters(); c.Slow != 1 || c.Delayed != 1 || c.Total() != 0 {
		t.Errorf("counters %+v, want one slow, delayed call and no faults", c)
	}

	// A caller that gives up while the latency runs gets its own status.
	ctx, cancel := context.WithCancel(context.Background())
	go func() { err, _ := serve(inj, ctx, method); done <- err }()
	clk.BlockUntil(1)
	cancel()
	if err := <-done; status.Code(err) != codes.Canceled {
		t.Fatalf("cancelled during latency: %v, want CANCELLED", err)
	}
}

func TestSetAtRunTime(t *testing.T) {
	inj := mustNew(t, on(chaos.Rule{Match: "*", Faults: chaos.Faults{Down: true}}))
	if err, _ := serve(inj, context.Background(), method); err == nil {
		t.Fatal("down, but the call succeeded")
	}
	if err := inj.Set(on(chaos.Rule{Match: "*"})); err != nil {
		t.Fatal(err)
	}
	if err, ran := serve(inj, context.Background(), method); err != nil || !ran {
		t.Fatalf("healthy again, but %v (ran %v)", err, ran)
	}
}

func TestIsInjected(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{nil, false},
		{errors.New("failsoft: chaos: plain error"), false},
		{status.Error(codes.Unavailable, "connection refused"), false},
		{status.Error(codes.Unavailable, chaos.MessagePrefix+"x"), true},
	} {
		if got := chaos.IsInjected(tc.err); got != tc.want {
			t.Errorf("IsInjected(%v) = %v", tc.err, got)
		}
	}
}

// The client side: failures never reach the invoker, a lost response does
// and is reported UNAVAILABLE, pushback fills the caller's trailer.
func TestUnaryClient(t *testing.T) {
	for _, tc := range []struct {
		name      string
		faults    chaos.Faults
		want      codes.Code
		sent      bool
		pushbackT string
	}{
		{"healthy", chaos.Faults{}, codes.OK, true, ""},
		{"error before send", chaos.Faults{ErrorRate: 1, ErrorCodes: []codes.Code{codes.DeadlineExceeded}}, codes.DeadlineExceeded, false, ""},
		{"down", chaos.Faults{Down: true}, codes.Unavailable, false, ""},
		{"pushback", chaos.Faults{PushbackRate: 1, Pushback: 250 * time.Millisecond}, codes.ResourceExhausted, false, "250"},
		{"succeeded but reported lost", chaos.Faults{LostRate: 1}, codes.Unavailable, true, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			inj := mustNew(t, on(chaos.Rule{Match: method, Faults: tc.faults}))
			sent := false
			var tr metadata.MD
			err := inj.UnaryClientInterceptor()(context.Background(), method, nil, nil, nil,
				func(context.Context, string, any, any, *grpc.ClientConn, ...grpc.CallOption) error {
					sent = true
					return nil
				},
				grpc.Trailer(&tr))
			if status.Code(err) != tc.want || sent != tc.sent {
				t.Fatalf("err %v, sent %v; want %v, sent %v", err, sent, tc.want, tc.sent)
			}
			if err != nil && !chaos.IsInjected(err) {
				t.Errorf("%v is not recognisable as injected", err)
			}
			if got := strings.Join(tr.Get(chaos.PushbackTrailer), ","); got != tc.pushbackT {
				t.Errorf("pushback trailer %q, want %q", got, tc.pushbackT)
			}
		})
	}
}
