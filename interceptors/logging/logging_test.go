package logging_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/trace"
	"go.uber.org/goleak"

	"github.com/failsoft/failsoft/interceptors/clock"
	"github.com/failsoft/failsoft/interceptors/logging"
	"github.com/failsoft/failsoft/interceptors/observe"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// capture is a JSON logger at level and what it wrote, one map per record.
type capture struct{ buf bytes.Buffer }

func (c *capture) logger(level slog.Level) *slog.Logger {
	return slog.New(slog.NewJSONHandler(&c.buf, &slog.HandlerOptions{Level: level}))
}

func (c *capture) records(t *testing.T) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(c.buf.String()), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("%q: %v", line, err)
		}
		out = append(out, m)
	}
	return out
}

func mustNew(t *testing.T, l *slog.Logger, opts ...logging.Option) *logging.Observer {
	t.Helper()
	o, err := logging.New(l, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return o
}

var spanCtx = trace.ContextWithSpanContext(context.Background(), trace.NewSpanContext(trace.SpanContextConfig{
	TraceID: trace.TraceID{1, 2, 3}, SpanID: trace.SpanID{4, 5, 6}, TraceFlags: trace.FlagsSampled,
}))

func TestLevelsAndAttributes(t *testing.T) {
	const m, target = "/p.Svc/Write", "dns:///payments"
	ev := func(e observe.Event) observe.Event { e.Method, e.Target = m, target; return e }
	for _, tc := range []struct {
		event observe.Event
		level string // empty: nothing at INFO
		msg   string
	}{
		{ev(observe.Event{Kind: observe.KeyStoreError, Reason: "claim", Err: errors.New("redis down")}), "ERROR", "failsoft: idempotency store failed"},
		{ev(observe.Event{Kind: observe.BreakerState, From: "closed", To: "open", Duration: 5 * time.Second}), "WARN", "failsoft: breaker opened"},
		{ev(observe.Event{Kind: observe.BreakerState, From: "half-open", To: "closed"}), "INFO", "failsoft: breaker closed"},
		{ev(observe.Event{Kind: observe.RetryStopped, Attempt: 3, Reason: "attempts", Err: errors.New("unavailable")}), "WARN", "failsoft: retries exhausted"},
		{ev(observe.Event{Kind: observe.RetryStopped, Reason: "budget"}), "WARN", "failsoft: retries stopped by the budget"},
		{ev(observe.Event{Kind: observe.RetryStopped, Reason: "committed"}), "INFO", "failsoft: retries stopped"},
		{ev(observe.Event{Kind: observe.RetryStopped, Reason: "code"}), "", ""},
		{ev(observe.Event{Kind: observe.BudgetExhausted}), "WARN", "failsoft: retry budget exhausted"},
		{ev(observe.Event{Kind: observe.Fallback, Reason: "cache"}), "WARN", "failsoft: fallback served"},
		{ev(observe.Event{Kind: observe.BreakerRejected}), "WARN", "failsoft: rejected by an open breaker"},
		{ev(observe.Event{Kind: observe.Throttled, Value: 0.4}), "WARN", "failsoft: rejected by the adaptive throttle"},
		{ev(observe.Event{Kind: observe.BulkheadRejected}), "WARN", "failsoft: rejected by a full bulkhead"},
		{ev(observe.Event{Kind: observe.DeadlineFailFast}), "WARN", "failsoft: too little deadline left to send"},
		{ev(observe.Event{Kind: observe.KeyConflict, Reason: "in_flight"}), "WARN", "failsoft: idempotency key conflict"},
		{ev(observe.Event{Kind: observe.PolicyUnmatched, Reason: "no registered descriptor describes this service"}), "WARN", "failsoft: policy for a service that is not registered"},
		{ev(observe.Event{Kind: observe.AttemptEnd, Attempt: 3}), "WARN", "failsoft: call needed 3 attempts"},
		{ev(observe.Event{Kind: observe.AttemptEnd, Attempt: 2}), "", ""},
		{ev(observe.Event{Kind: observe.AttemptEnd, Attempt: 4, Err: errors.New("x")}), "", ""},
		{ev(observe.Event{Kind: observe.AttemptStart, Attempt: 1}), "", ""},
		{ev(observe.Event{Kind: observe.Backoff, Attempt: 2, Duration: time.Millisecond}), "", ""},
		{ev(observe.Event{Kind: observe.Replay}), "", ""},
		{ev(observe.Event{Kind: observe.DeadlineSet, Duration: time.Second}), "", ""},
	} {
		t.Run(tc.event.Kind.String()+"/"+tc.event.Reason+tc.event.To, func(t *testing.T) {
			var c capture
			mustNew(t, c.logger(slog.LevelInfo)).Observe(spanCtx, tc.event)
			recs := c.records(t)
			if tc.level == "" {
				if len(recs) != 0 {
					t.Fatalf("logged %v at INFO, want nothing", recs)
				}
				return
			}
			if len(recs) != 1 {
				t.Fatalf("%d records, want 1", len(recs))
			}
			r := recs[0]
			if r["level"] != tc.level || r["msg"] != tc.msg {
				t.Errorf("%v %q, want %v %q", r["level"], r["msg"], tc.level, tc.msg)
			}
			want := map[string]any{
				logging.KeyTraceID: "01020300000000000000000000000000", logging.KeySpanID: "0405060000000000",
				logging.KeyMethod: m, logging.KeyTarget: target, logging.KeyEvent: tc.event.Kind.String(),
			}
			if tc.event.Err != nil {
				want[logging.KeyError] = tc.event.Err.Error()
			}
			if tc.event.To != "" {
				want[logging.KeyTo] = tc.event.To
			}
			for k, v := range want {
				if r[k] != v {
					t.Errorf("%s = %v, want %v (record %v)", k, r[k], v, r)
				}
			}
		})
	}
}

// At DEBUG everything is written, still with the trace.
func TestDebugWritesEverything(t *testing.T) {
	var c capture
	o := mustNew(t, c.logger(slog.LevelDebug))
	o.Observe(spanCtx, observe.Event{Kind: observe.Backoff, Attempt: 2, Duration: 30 * time.Millisecond, Reason: "pushback"})
	recs := c.records(t)
	if len(recs) != 1 || recs[0]["level"] != "DEBUG" || recs[0][logging.KeyReason] != "pushback" || recs[0][logging.KeyTraceID] == nil {
		t.Fatalf("records %v", recs)
	}
}

func TestWants(t *testing.T) {
	var c capture
	for _, tc := range []struct {
		level slog.Level
		opts  []logging.Option
		kind  observe.Kind
		want  bool
	}{
		{slog.LevelInfo, nil, observe.BreakerState, true},
		{slog.LevelInfo, nil, observe.AttemptEnd, true},
		{slog.LevelInfo, []logging.Option{logging.WithManyAttempts(0)}, observe.AttemptEnd, false},
		{slog.LevelInfo, nil, observe.AttemptStart, false},
		{slog.LevelInfo, nil, observe.KeyAttached, false},
		{slog.LevelDebug, nil, observe.KeyAttached, true},
		{slog.LevelError, nil, observe.BreakerState, false},
		{slog.LevelError, nil, observe.KeyStoreError, true},
	} {
		o := mustNew(t, c.logger(tc.level), tc.opts...)
		if got := o.Wants(context.Background(), tc.kind); got != tc.want {
			t.Errorf("at %v, Wants(%v) = %v", tc.level, tc.kind, got)
		}
	}
}

// An outage makes the same warning on every call: the limiter lets a
// burst through per interval and target, and the first record after that
// says how many it held back.
func TestRateLimit(t *testing.T) {
	var c capture
	clk := clock.NewFake(time.Unix(0, 0))
	o := mustNew(t, c.logger(slog.LevelInfo), logging.WithRateLimit(3, time.Second), logging.WithClock(clk))
	reject := func(target string) {
		o.Observe(context.Background(), observe.Event{Kind: observe.BreakerRejected, Target: target})
	}
	for range 10 {
		reject("a")
	}
	reject("b") // another target has its own budget
	o.Observe(context.Background(), observe.Event{Kind: observe.BreakerState, Target: "a", From: "closed", To: "open"})
	clk.Advance(time.Second)
	reject("a")
	recs := c.records(t)
	if len(recs) != 6 {
		t.Fatalf("%d records, want 3 + 1 + 1 + 1", len(recs))
	}
	last := recs[5]
	if last[logging.KeyTarget] != "a" || last[logging.KeySuppressed] != float64(7) {
		t.Errorf("record after the quiet spell %v, want suppressed 7", last)
	}
	for _, r := range recs[:5] {
		if _, ok := r[logging.KeySuppressed]; ok {
			t.Errorf("record %v says it follows suppressed ones", r)
		}
	}
}

func TestOptionsNameTheBadOne(t *testing.T) {
	l := slog.New(slog.DiscardHandler)
	for _, tc := range []struct {
		opt  logging.Option
		want string
	}{
		{logging.WithRateLimit(-1, time.Second), "WithRateLimit: burst -1"},
		{logging.WithRateLimit(5, 0), "WithRateLimit: interval 0s"},
		{logging.WithManyAttempts(1), "WithManyAttempts: 1"},
		{logging.WithManyAttempts(-2), "WithManyAttempts: -2"},
		{logging.WithClock(nil), "WithClock"},
	} {
		if _, err := logging.New(l, tc.opt); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("New with %s: %v", tc.want, err)
		}
	}
	if _, err := logging.New(nil); err == nil {
		t.Error("New(nil) succeeded")
	}
	if _, err := logging.New(l, logging.WithRateLimit(0, 0)); err != nil {
		t.Errorf("turning the limit off: %v", err)
	}
}

// Many targets do not grow the limiter without bound, and forgetting a
// quiet target's window loses no count of suppressed records.
func TestRateLimitForgetsQuietTargets(t *testing.T) {
	var c capture
	clk := clock.NewFake(time.Unix(0, 0))
	o := mustNew(t, c.logger(slog.LevelInfo), logging.WithRateLimit(1, time.Second), logging.WithClock(clk))
	reject := func(target string) {
		o.Observe(context.Background(), observe.Event{Kind: observe.BreakerRejected, Target: target})
	}
	reject("busy")
	reject("busy") // suppressed: its window must survive the sweep
	for i := range 3000 {
		if i%1000 == 0 {
			clk.Advance(time.Second)
		}
		reject(fmt.Sprint("t", i))
	}
	reject("busy")
	recs := c.records(t)
	last := recs[len(recs)-1]
	if len(recs) != 3002 || last[logging.KeyTarget] != "busy" || last[logging.KeySuppressed] != float64(1) {
		t.Fatalf("%d records, last %v; want 3002, the last saying 1 was suppressed", len(recs), last)
	}
}
