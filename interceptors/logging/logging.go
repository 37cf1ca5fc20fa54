package logging

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/failsoft/failsoft/interceptors/clock"
	"github.com/failsoft/failsoft/interceptors/internal/option"
	"github.com/failsoft/failsoft/interceptors/observe"
)

// Attribute keys of the records.
const (
	KeyTraceID    = "trace_id"
	KeySpanID     = "span_id"
	KeyMethod     = "grpc.method"
	KeyTarget     = "grpc.target"
	KeyEvent      = "failsoft.event"
	KeyAttempt    = "failsoft.attempt"
	KeyReason     = "failsoft.reason"
	KeyFrom       = "failsoft.breaker.from"
	KeyTo         = "failsoft.breaker.to"
	KeyDuration   = "failsoft.duration"
	KeySuppressed = "suppressed"
	KeyError      = "error"
)

type config struct {
	clk          clock.Clock
	burst        int
	interval     time.Duration
	manyAttempts int
}

// Option configures New.
type Option func(*config) error

// WithRateLimit lets at most burst records of one event kind and target
// through per interval; the rest are counted and reported on the next
// record let through. The default is 10 per 10 s; burst 0 turns limiting
// off.
func WithRateLimit(burst int, interval time.Duration) Option {
	return func(c *config) error {
		if burst < 0 {
			return fmt.Errorf("failsoft: logging: WithRateLimit: burst %d is negative", burst)
		}
		if burst > 0 && interval <= 0 {
			return fmt.Errorf("failsoft: logging: WithRateLimit: interval %v is not positive", interval)
		}
		c.burst, c.interval = burst, interval
		return nil
	}
}

// WithManyAttempts logs a warning for a call that succeeded only at its
// n-th attempt or later (hedges included). The default is 3; 0 turns it
// off, which also spares the retry layer from timing attempts when the
// logger is the only observer.
func WithManyAttempts(n int) Option {
	return func(c *config) error {
		if n < 0 || n == 1 {
			return fmt.Errorf("failsoft: logging: WithManyAttempts: %d is neither 0 (off) nor at least 2", n)
		}
		c.manyAttempts = n
		return nil
	}
}

// WithClock sets the clock of the rate limit.
func WithClock(clk clock.Clock) Option {
	return func(c *config) error {
		if clk == nil {
			return errors.New("failsoft: logging: WithClock: nil clock")
		}
		c.clk = clk
		return nil
	}
}

// Observer writes events to a logger. Create one with New.
type Observer struct {
	log *slog.Logger
	cfg config

	mu      sync.Mutex
	windows map[limitKey]*window
}

type limitKey struct {
	kind   observe.Kind
	target string
}

type window struct {
	start      time.Time
	n          int
	suppressed int
}

// New returns an Observer that writes to logger.
func New(logger *slog.Logger, opts ...Option) (*Observer, error) {
	if logger == nil {
		return nil, errors.New("failsoft: logging: nil logger")
	}
	cfg := config{clk: clock.System(), burst: 10, interval: 10 * time.Second, manyAttempts: 3}
	if err := option.Apply(&cfg, opts...); err != nil {
		return nil, err
	}
	return &Observer{log: logger, cfg: cfg, windows: map[limitKey]*window{}}, nil
}

// level returns the level and message an event is logged with.
func (o *Observer) level(e *observe.Event) (slog.Level, string) {
	switch e.Kind {
	case observe.KeyStoreError:
		return slog.LevelError, "failsoft: idempotency store failed"
	case observe.BreakerState:
		if e.To == "open" {
			return slog.LevelWarn, "failsoft: breaker opened"
		}
		return slog.LevelInfo, "failsoft: breaker " + e.To
	case observe.RetryStopped:
		switch e.Reason {
		case "attempts":
			return slog.LevelWarn, "failsoft: retries exhausted"
		case "deadline", "budget":
			return slog.LevelWarn, "failsoft: retries stopped by the " + e.Reason
		case "code":
			return slog.LevelDebug, "failsoft: not retried"
		}
		return slog.LevelInfo, "failsoft: retries stopped"
	case observe.BudgetExhausted:
		return slog.LevelWarn, "failsoft: retry budget exhausted"
	case observe.Fallback:
		return slog.LevelWarn, "failsoft: fallback served"
	case observe.BreakerRejected:
		return slog.LevelWarn, "failsoft: rejected by an open breaker"
	case observe.Throttled:
		return slog.LevelWarn, "failsoft: rejected by the adaptive throttle"
	case observe.BulkheadRejected:
		return slog.LevelWarn, "failsoft: rejected by a full bulkhead"
	case observe.DeadlineFailFast:
		return slog.LevelWarn, "failsoft: too little deadline left to send"
	case observe.KeyConflict:
		return slog.LevelWarn, "failsoft: idempotency key conflict"
	case observe.PolicyUnmatched:
		return slog.LevelWarn, "failsoft: policy for a service that is not registered"
	case observe.AttemptEnd:
		if o.cfg.manyAttempts > 0 && e.Err == nil && e.Attempt >= o.cfg.manyAttempts {
			return slog.LevelWarn, fmt.Sprintf("failsoft: call needed %d attempts", e.Attempt)
		}
		return slog.LevelDebug, "failsoft: attempt ended"
	}
	return slog.LevelDebug, "failsoft: " + e.Kind.String()
}

// Wants reports whether an event of kind k could be written: whether the
// logger enables the highest level the kind is logged at.
func (o *Observer) Wants(ctx context.Context, k observe.Kind) bool {
	lvl := slog.LevelDebug
	switch k {
	case observe.KeyStoreError:
		lvl = slog.LevelError
	case observe.BreakerState, observe.BudgetExhausted, observe.Fallback, observe.BreakerRejected,
		observe.Throttled, observe.BulkheadRejected, observe.DeadlineFailFast, observe.KeyConflict, observe.RetryStopped,
		observe.PolicyUnmatched:
		lvl = slog.LevelWarn
	case observe.AttemptEnd:
		if o.cfg.manyAttempts > 0 {
			lvl = slog.LevelWarn
		}
	}
	return o.log.Enabled(ctx, lvl)
}

// Observe writes e, unless its level is disabled or its rate limit
// reached.
func (o *Observer) Observe(ctx context.Context, e observe.Event) {
	lvl, msg := o.level(&e)
	if !o.log.Enabled(ctx, lvl) {
		return
	}
	suppressed, ok := o.allow(e.Kind, e.Target)
	if !ok {
		return
	}
	attrs := make([]slog.Attr, 0, 12)
	if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
		attrs = append(attrs, slog.String(KeyTraceID, sc.TraceID().String()), slog.String(KeySpanID, sc.SpanID().String()))
	}
	attrs = append(attrs, slog.String(KeyEvent, e.Kind.String()))
	if e.Method != "" {
		attrs = append(attrs, slog.String(KeyMethod, e.Method))
	}
	if e.Target != "" {
		attrs = append(attrs, slog.String(KeyTarget, e.Target))
	}
	if e.Attempt > 0 {
		attrs = append(attrs, slog.Int(KeyAttempt, e.Attempt))
	}
	if e.Reason != "" {
		attrs = append(attrs, slog.String(KeyReason, e.Reason))
	}
	if e.From != "" || e.To != "" {
		attrs = append(attrs, slog.String(KeyFrom, e.From), slog.String(KeyTo, e.To))
	}
	if e.Duration > 0 {
		attrs = append(attrs, slog.Duration(KeyDuration, e.Duration))
	}
	if e.Err != nil {
		attrs = append(attrs, slog.String(KeyError, e.Err.Error()))
	}
	if suppressed > 0 {
		attrs = append(attrs, slog.Int(KeySuppressed, suppressed))
	}
	o.log.LogAttrs(ctx, lvl, msg, attrs...)
}

// maxWindows bounds the rate limit's memory: a client of many targets
// forgets the windows that ended without suppressing anything.
const maxWindows = 1024

func (o *Observer) forgetQuiet(now time.Time) {
	for k, w := range o.windows {
		if w.suppressed == 0 && now.Sub(w.start) >= o.cfg.interval {
			delete(o.windows, k)
		}
	}
}

// allow applies the rate limit of (kind, target). When it lets a record
// through, it returns how many were suppressed since the last one.
func (o *Observer) allow(kind observe.Kind, target string) (int, bool) {
	if o.cfg.burst == 0 {
		return 0, true
	}
	now := o.cfg.clk.Now()
	o.mu.Lock()
	defer o.mu.Unlock()
	k := limitKey{kind, target}
	w := o.windows[k]
	if w == nil {
		if len(o.windows) >= maxWindows {
			o.forgetQuiet(now)
		}
		w = &window{start: now}
		o.windows[k] = w
	}
	if now.Sub(w.start) >= o.cfg.interval {
		w.start, w.n = now, 0
	}
	if w.n >= o.cfg.burst {
		w.suppressed++
		return 0, false
	}
	w.n++
	s := w.suppressed
	w.suppressed = 0
	return s, true
}
