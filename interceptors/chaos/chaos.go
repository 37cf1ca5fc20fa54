package chaos

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/failsoft/failsoft/interceptors/clock"
	"github.com/failsoft/failsoft/interceptors/internal/option"
)

// Names by which injected faults are recognised.
const (
	// MessagePrefix starts the message of every status the package creates.
	MessagePrefix = "failsoft: chaos: "
	// Trailer is the trailer a server interceptor adds to a call it
	// injected a fault into; its value is the fault's kind.
	Trailer = "failsoft-chaos"
	// PushbackTrailer is the trailer gRPC clients read a server's retry
	// delay from (gRFC A6).
	PushbackTrailer = "grpc-retry-pushback-ms"
	// MetricFaults counts injected faults by kind, side and method.
	MetricFaults = "failsoft.chaos.faults"
	// SpanEvent is the event added to the call's span for a fault.
	SpanEvent = "failsoft.chaos.fault"
	// SpanAttribute is set to true on the span of a call that met a fault.
	SpanAttribute = "failsoft.chaos.injected"
)

// Kinds of faults, as counted and as the Trailer and span say.
const (
	KindError    = "error"
	KindOutage   = "outage"
	KindPushback = "pushback"
	KindLost     = "lost"
	KindSlow     = "slow"
)

// IsInjected reports whether err is a status this package injected.
func IsInjected(err error) bool {
	s, ok := status.FromError(err)
	return ok && strings.HasPrefix(s.Message(), MessagePrefix)
}

// Injector injects faults by its current Config. It is safe for
// concurrent use; its interceptors can be used by any number of servers
// and clients. Create one with New.
type Injector struct {
	clk    clock.Clock
	seed   uint64
	faults metric.Int64Counter

	state atomic.Pointer[state] // nil or not enabled: inject nothing
	randM sync.Mutex
	rand  *rand.Rand

	calls, outage, slow, delayed, lost, pushback atomic.Uint64
	errs                                         [codes.Unauthenticated + 1]atomic.Uint64
}

type state struct {
	Config
	since time.Time // when set, for outage windows
}

type config struct {
	seed     uint64
	seeded   bool
	clk      clock.Clock
	meter    metric.MeterProvider
	initial  Config
	hasFirst bool
}

// Option configures New.
type Option func(*config) error

// WithSeed seeds the random source of the injector's decisions, so that a
// run can be repeated. Without it the seed is random; Status shows it.
func WithSeed(seed uint64) Option {
	return func(c *config) error { c.seed, c.seeded = seed, true; return nil }
}

// WithClock sets the clock of latency and outage windows.
func WithClock(clk clock.Clock) Option {
	return func(c *config) error {
		if clk == nil {
			return errors.New("failsoft: chaos: WithClock: nil clock")
		}
		c.clk = clk
		return nil
	}
}

// WithMeterProvider sets where the failsoft.chaos.faults counter is
// recorded; the global provider by default.
func WithMeterProvider(mp metric.MeterProvider) Option {
	return func(c *config) error {
		if mp == nil {
			return errors.New("failsoft: chaos: WithMeterProvider: nil provider")
		}
		c.meter = mp
		return nil
	}
}

// WithConfig starts the injector with cfg instead of with nothing enabled.
func WithConfig(cfg Config) Option {
	return func(c *config) error {
		if err := cfg.Validate(); err != nil {
			return fmt.Errorf("WithConfig: %w", err)
		}
		c.initial, c.hasFirst = cfg, true
		return nil
	}
}

// New returns an Injector that injects nothing until it is given a Config
// with Enabled set.
func New(opts ...Option) (*Injector, error) {
	c := config{clk: clock.System(), meter: otel.GetMeterProvider()}
	if err := option.Apply(&c, opts...); err != nil {
		return nil, err
	}
	if !c.seeded {
		c.seed = rand.Uint64()
	}
	counter, err := c.meter.Meter("github.com/failsoft/failsoft/interceptors/chaos").Int64Counter(MetricFaults,
		metric.WithDescription("Faults injected by failsoft's chaos interceptors."), metric.WithUnit("{fault}"))
	if err != nil {
		return nil, fmt.Errorf("failsoft: chaos: %w", err)
	}
	inj := &Injector{
		clk: c.clk, seed: c.seed, faults: counter,
		rand: rand.New(rand.NewPCG(c.seed, c.seed^0x9e3779b97f4a7c15)),
	}
	if c.hasFirst {
		inj.state.Store(&state{Config: c.initial, since: c.clk.Now()})
	}
	return inj, nil
}

// Set replaces the config after validating it. Outage windows start again
// from now.
func (inj *Injector) Set(cfg Config) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	inj.state.Store(&state{Config: cfg, since: inj.clk.Now()})
	return nil
}

// Config returns the current config.
func (inj *Injector) Config() Config {
	if st := inj.state.Load(); st != nil {
		return st.Config
	}
	return Config{}
}

// Counters are the faults injected so far.
type Counters struct {
	// Calls counts the calls a rule matched while enabled.
	Calls    uint64            `json:"calls"`
	Errors   map[string]uint64 `json:"errors"` // by code name
	Outage   uint64            `json:"outage"`
	Slow     uint64            `json:"slow"`
	Delayed  uint64            `json:"delayed"`
	Lost     uint64            `json:"lost"`
	Pushback uint64            `json:"pushback"`
}

// Total is the number of faults injected, delays not counted.
func (c Counters) Total() uint64 {
	n := c.Outage + c.Lost + c.Pushback
	for _, v := range c.Errors {
		n += v
	}
	return n
}

// Counters returns the faults injected so far.
func (inj *Injector) Counters() Counters {
	c := Counters{
		Calls: inj.calls.Load(), Outage: inj.outage.Load(), Slow: inj.slow.Load(),
		Delayed: inj.delayed.Load(), Lost: inj.lost.Load(), Pushback: inj.pushback.Load(),
		Errors: map[string]uint64{},
	}
	for i := range inj.errs {
		if n := inj.errs[i].Load(); n > 0 {
			c.Errors[codeName(codes.Code(i))] = n
		}
	}
	return c
}

// Status is the injector's config and what it did, as the control
// endpoint shows it.
type Status struct {
	Config  Config   `json:"config"`
	Summary string   `json:"summary"`
	Seed    uint64   `json:"seed"`
	Faults  Counters `json:"faults"`
	Total   uint64   `json:"total_faults"`
}

// Status returns the current config and counters.
func (inj *Injector) Status() Status {
	c := inj.Config()
	n := inj.Counters()
	return Status{Config: c, Summary: c.String(), Seed: inj.seed, Faults: n, Total: n.Total()}
}

// decision is what happens to one call.
type decision struct {
	delay    time.Duration
	err      error
	kind     string // of err
	code     codes.Code
	pushback time.Duration
	lose     bool
	slow     bool
}

// rule returns the faults for fullMethod, or nil when none apply. It is
// the whole cost of a call while the injector is off.
func (inj *Injector) rule(fullMethod string) (*state, *Rule) {
	st := inj.state.Load()
	if st == nil || !st.Enabled {
		return nil, nil
	}
	for i := range st.Rules {
		if st.Rules[i].matches(fullMethod) {
			return st, &st.Rules[i]
		}
	}
	return nil, nil
}

// decide draws the faults of one call.
func (inj *Injector) decide(st *state, r *Rule) decision {
	inj.calls.Add(1)
	var d decision
	d.delay = r.Latency
	if r.SlowFraction > 0 && inj.float() < r.SlowFraction {
		d.delay += r.SlowLatency
		d.slow = true
		inj.slow.Add(1)
	}
	if d.delay > 0 {
		inj.delayed.Add(1)
	}
	if r.Down || r.inOutage(st.since, inj.clk.Now()) {
		inj.outage.Add(1)
		d.kind, d.code = KindOutage, codes.Unavailable
		d.err = status.Error(codes.Unavailable, MessagePrefix+"service is down (injected outage)")
		return d
	}
	if r.ErrorRate > 0 || r.PushbackRate > 0 {
		x := inj.float()
		switch {
		case x < r.ErrorRate:
			code := codes.Unavailable
			if n := len(r.ErrorCodes); n > 0 {
				code = r.ErrorCodes[inj.intn(n)]
			}
			inj.errs[code].Add(1)
			d.kind, d.code = KindError, code
			d.err = status.Error(code, MessagePrefix+"injected "+codeName(code))
			return d
		case x < r.ErrorRate+r.PushbackRate:
			inj.pushback.Add(1)
			d.kind, d.code, d.pushback = KindPushback, codes.ResourceExhausted, r.Pushback
			d.err = status.Errorf(codes.ResourceExhausted, MessagePrefix+"overloaded, retry in %v (injected pushback)", r.Pushback)
			return d
		}
	}
	if r.LostRate > 0 && inj.float() < r.LostRate {
		d.lose = true
	}
	return d
}

func (f *Faults) inOutage(since, now time.Time) bool {
	if f.OutageFor <= 0 || f.OutageEvery <= 0 {
		return false
	}
	return now.Sub(since)%f.OutageEvery < f.OutageFor
}

// errLost is the status of a call whose response was dropped.
var errLost = status.Error(codes.Unavailable, MessagePrefix+"response lost after the work was done (injected)")

func (inj *Injector) float() float64 {
	inj.randM.Lock()
	defer inj.randM.Unlock()
	return inj.rand.Float64()
}

func (inj *Injector) intn(n int) int {
	inj.randM.Lock()
	defer inj.randM.Unlock()
	return inj.rand.IntN(n)
}

// wait sleeps d unless ctx ends first.
func (inj *Injector) wait(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return nil
	}
	t := inj.clk.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C():
		return nil
	case <-ctx.Done():
		return status.FromContextError(ctx.Err()).Err()
	}
}

// record counts a fault in the metric and marks it on the span in ctx.
func (inj *Injector) record(ctx context.Context, side, method, kind string, code codes.Code) {
	attrs := attribute.NewSet(
		attribute.String("failsoft.chaos.kind", kind),
		attribute.String("failsoft.chaos.side", side),
		attribute.String("grpc.method", method),
	)
	inj.faults.Add(ctx, 1, metric.WithAttributeSet(attrs))
	span := trace.SpanFromContext(ctx)
	if !span.IsRecording() {
		return
	}
	span.SetAttributes(attribute.Bool(SpanAttribute, true))
	span.AddEvent(SpanEvent, trace.WithAttributes(
		attribute.String("failsoft.chaos.kind", kind),
		attribute.String("failsoft.chaos.side", side),
		attribute.String("grpc.status", codeName(code)),
	))
}

// before waits out the call's latency and returns the error it fails
// with, if any, having set the trailers that say what happened.
func (inj *Injector) before(ctx context.Context, side, method string, d decision, setTrailer func(metadata.MD)) error {
	if d.slow {
		inj.record(ctx, side, method, KindSlow, codes.OK)
	}
	if err := inj.wait(ctx, d.delay); err != nil {
		return err
	}
	if d.err == nil {
		return nil
	}
	md := metadata.Pairs(Trailer, d.kind)
	if d.pushback > 0 {
		md = metadata.Join(md, pushbackMD(d.pushback))
	}
	setTrailer(md)
	inj.record(ctx, side, method, d.kind, d.code)
	return d.err
}

func (inj *Injector) lostResponse(ctx context.Context, side, method string, setTrailer func(metadata.MD)) {
	inj.lost.Add(1)
	setTrailer(metadata.Pairs(Trailer, KindLost))
	inj.record(ctx, side, method, KindLost, codes.Unavailable)
}

func pushbackMD(d time.Duration) metadata.MD {
	return metadata.Pairs(PushbackTrailer, strconv.FormatInt(d.Milliseconds(), 10))
}
