package failsoft

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/failsoft/failsoft/interceptors/breaker"
	"github.com/failsoft/failsoft/interceptors/bulkhead"
	"github.com/failsoft/failsoft/interceptors/clock"
	"github.com/failsoft/failsoft/interceptors/deadline"
	"github.com/failsoft/failsoft/interceptors/fallback"
	"github.com/failsoft/failsoft/interceptors/idempotency"
	"github.com/failsoft/failsoft/interceptors/observe"
	"github.com/failsoft/failsoft/interceptors/outlier"
	"github.com/failsoft/failsoft/interceptors/policy"
	"github.com/failsoft/failsoft/interceptors/retry"
	"github.com/failsoft/failsoft/interceptors/telemetry"
	"github.com/failsoft/failsoft/interceptors/throttle"
	"github.com/failsoft/failsoft/internal/chain"
)

// Option configures the client suite built by DialOptions.
type Option func(*config) error

// Layer names, used in error messages.
const (
	layerTelemetry = "telemetry"
	layerDeadline  = "deadline"
	layerKey       = "idempotency"
	layerFallback  = "fallback"
	layerRetry     = "retry"
	layerThrottle  = "throttle"
	layerBreaker   = "breaker"
	layerBulkhead  = "bulkhead"
)

type config struct {
	resolver *policy.Resolver
	observer observe.Observer
	clock    clock.Clock
	lb       *string // nil: DefaultLoadBalancing
	// latePolicies: leave invalid policies to each method's first call
	// (WithLatePolicies) instead of refusing them here.
	latePolicies bool
	// noOutlier leaves the outlier-ejection policy out of the
	// load-balancing config.
	noOutlier bool

	telemetry layer[telemetry.Option]
	deadline  layer[deadline.Option]
	key       layer[idempotency.Option]
	fallback  layer[fallback.Option]
	retry     layer[retry.Option]
	throttle  layer[throttle.Option]
	breaker   layer[breaker.Option]
	bulkhead  layer[bulkhead.Option]
}

// layer is one layer's configuration: its options, and whether it was
// configured (With...) or switched off (Without...).
type layer[O any] struct {
	set, off bool
	opts     []O
}

// configure records a layer's options, refusing a second configuration:
// two configurations of one layer are almost always a mistake in
// assembling options, and silently letting one win would hide it.
func (l *layer[O]) configure(name string, off bool, opts []O) error {
	if l.set {
		return fmt.Errorf("failsoft: the %s layer is configured twice", name)
	}
	l.set, l.off, l.opts = true, off, opts
	return nil
}

// enabled reports whether the layer runs: layers that are on by default run
// unless switched off; the others run once configured.
func (l *layer[O]) enabled(onByDefault bool) bool {
	if l.set {
		return !l.off
	}
	return onByDefault
}

// WithResolver makes every layer read method policies from r instead of
// policy.Default().
func WithResolver(r *policy.Resolver) Option {
	return func(c *config) error {
		if r == nil {
			return errors.New("failsoft.WithResolver: nil resolver")
		}
		if c.resolver != nil {
			return errors.New("failsoft.WithResolver: given twice")
		}
		c.resolver = r
		return nil
	}
}

// DefaultLoadBalancing is the load-balancing config DialOptions gives a
// connection unless WithLoadBalancing says otherwise: round_robin, so that
// calls spread over every backend the name resolves to and a retry lands
// on another backend than the attempt that failed (grpc-go's own default,
// pick_first, sends every attempt to the same one). DialOptions runs it
// inside the outlier-ejection policy unless WithoutOutlierEjection.
const DefaultLoadBalancing = `[{"round_robin":{}}]`

// WithLoadBalancing sets the connection's load-balancing config: the JSON
// value of a service config's "loadBalancingConfig", such as
// `[{"least_request_experimental":{}}]`, or "" to leave grpc-go's default
// (pick_first). A service config from the name resolver still wins, as it
// does over any default service config. Unless WithoutOutlierEjection,
// the policy runs inside the outlier-ejection policy (outlier.Around),
// except when lb is "" or already starts with it (outlier.Name, to set
// its configuration).
func WithLoadBalancing(lb string) Option {
	return func(c *config) error {
		if c.lb != nil {
			return errors.New("failsoft.WithLoadBalancing: given twice")
		}
		if lb != "" {
			var v []map[string]json.RawMessage
			if err := json.Unmarshal([]byte(lb), &v); err != nil || len(v) == 0 {
				return fmt.Errorf("failsoft.WithLoadBalancing(%q): want a JSON list of one-key objects such as %s", lb, DefaultLoadBalancing)
			}
		}
		c.lb = &lb
		return nil
	}
}

// WithoutOutlierEjection leaves out the outlier-ejection policy (package
// outlier) that DialOptions otherwise runs around the load-balancing
// policy, so that a backend that keeps failing or answers much slower than
// its siblings keeps its share of calls.
func WithoutOutlierEjection() Option {
	return func(c *config) error {
		if c.noOutlier {
			return errors.New("failsoft.WithoutOutlierEjection: given twice")
		}
		c.noOutlier = true
		return nil
	}
}

// WithObserver makes every layer report its decisions to o, in addition to
// the telemetry layer.
func WithObserver(o observe.Observer) Option {
	return func(c *config) error {
		if o == nil {
			return errors.New("failsoft.WithObserver: nil observer")
		}
		c.observer = observe.Multi(c.observer, o)
		return nil
	}
}

// WithClock makes every time-based layer read time from cl; tests use a
// clock.Fake.
func WithClock(cl clock.Clock) Option {
	return func(c *config) error {
		if cl == nil {
			return errors.New("failsoft.WithClock: nil clock")
		}
		c.clock = cl
		return nil
	}
}

// WithTelemetry configures the OpenTelemetry layer (on by default, with
// the global tracer and meter providers: with none installed it costs no
// allocation). It hears every other layer's decisions.
func WithTelemetry(opts ...telemetry.Option) Option {
	return func(c *config) error { return c.telemetry.configure(layerTelemetry, false, opts) }
}

// WithoutTelemetry switches the OpenTelemetry layer off.
func WithoutTelemetry() Option {
	return func(c *config) error { return c.telemetry.configure(layerTelemetry, true, nil) }
}

// WithDeadline configures the deadline layer (on by default).
func WithDeadline(opts ...deadline.Option) Option {
	return func(c *config) error { return c.deadline.configure(layerDeadline, false, opts) }
}

// WithoutDeadline switches the deadline layer off.
func WithoutDeadline() Option {
	return func(c *config) error { return c.deadline.configure(layerDeadline, true, nil) }
}

// WithIdempotency configures the idempotency-key layer (on by default):
// methods whose policy requires a key get one per logical call, reused by
// every retry and hedge.
func WithIdempotency(opts ...idempotency.Option) Option {
	return func(c *config) error { return c.key.configure(layerKey, false, opts) }
}

// WithoutIdempotency switches the idempotency-key layer off. Methods that
// require a key are then not retried unless the caller attaches one.
func WithoutIdempotency() Option {
	return func(c *config) error { return c.key.configure(layerKey, true, nil) }
}

// WithFallback configures the fallback chains (on by default; without
// chains configured it passes every call through).
func WithFallback(opts ...fallback.Option) Option {
	return func(c *config) error { return c.fallback.configure(layerFallback, false, opts) }
}

// WithoutFallback switches the fallback layer off.
func WithoutFallback() Option {
	return func(c *config) error { return c.fallback.configure(layerFallback, true, nil) }
}

// WithRetry configures retries and hedging (on by default; only methods
// whose policy says they are safe are ever retried).
func WithRetry(opts ...retry.Option) Option {
	return func(c *config) error { return c.retry.configure(layerRetry, false, opts) }
}

// WithoutRetry switches retries and hedging off.
func WithoutRetry() Option {
	return func(c *config) error { return c.retry.configure(layerRetry, true, nil) }
}

// WithThrottle configures the adaptive throttle (on by default).
func WithThrottle(opts ...throttle.Option) Option {
	return func(c *config) error { return c.throttle.configure(layerThrottle, false, opts) }
}

// WithoutThrottle switches the adaptive throttle off.
func WithoutThrottle() Option {
	return func(c *config) error { return c.throttle.configure(layerThrottle, true, nil) }
}

// WithBreaker configures the circuit breakers (on by default). The seed's
// rule for a payment gateway is
// WithBreaker(breaker.FailuresWithin(5, 30*time.Second)).
func WithBreaker(opts ...breaker.Option) Option {
	return func(c *config) error { return c.breaker.configure(layerBreaker, false, opts) }
}

// WithoutBreaker switches the circuit breakers off.
func WithoutBreaker() Option {
	return func(c *config) error { return c.breaker.configure(layerBreaker, true, nil) }
}

// WithBulkhead switches on the bulkhead, a concurrency limit per target.
// It is off by default: a limit is a capacity decision only its user can
// make.
func WithBulkhead(opts ...bulkhead.Option) Option {
	return func(c *config) error { return c.bulkhead.configure(layerBulkhead, false, opts) }
}

// suite is the enabled layers, outermost first, folded into one unary and
// one stream interceptor (see internal/chain): grpc-go's own chaining
// would allocate a closure per layer on every call.
type suite struct {
	unary  *chain.Unaries
	stream *chain.Streams
	// noKey, when not nil, is unary without the idempotency layer, which
	// has nothing to do for a method that requires no key: such calls,
	// most of them, skip it, a hop fewer. resolver resolves the method
	// that tells them apart.
	noKey    *chain.Unaries
	resolver *policy.Resolver
	lb       string // the load-balancing config; "": grpc-go's default
}

// layerOf builds a layer from the suite's shared options followed by the
// user's, so the user's win. It returns nil when the layer is off.
func layerOf[O any, L any](name string, l *layer[O], onByDefault bool, shared []O, newLayer func(...O) (L, error)) (any, error) {
	if !l.enabled(onByDefault) {
		return nil, nil
	}
	built, err := newLayer(append(shared, l.opts...)...)
	if err != nil {
		return nil, layerError("failsoft: "+name+" layer", err)
	}
	return built, nil
}

// layerError prefixes a layer's construction error with where it comes
// from: each of its errors, when the layer joined several, so that every
// line of the message names the layer.
func layerError(prefix string, err error) error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs := j.Unwrap()
		out := make([]error, len(errs))
		for i, e := range errs {
			out[i] = fmt.Errorf("%s: %w", prefix, e)
		}
		return errors.Join(out...)
	}
	return fmt.Errorf("%s: %w", prefix, err)
}

// DialOptions returns the dial options that install the failsoft client
// suite on a connection: every layer, in the order documented in the
// package comment, as one unary and one stream interceptor, and
// grpc.WithDisableRetry so that grpc-go's service-config retries do not
// multiply the suite's attempts (gRPC's transparent retries stay on).
//
// Invalid options give an error naming the option; nothing is returned
// half-built. Pass the result to grpc.NewClient along with the dial
// options you already use.
func DialOptions(opts ...Option) ([]grpc.DialOption, error) {
	s, err := build(opts)
	if err != nil {
		return nil, err
	}
	dopts := []grpc.DialOption{
		grpc.WithDisableRetry(),
		grpc.WithChainUnaryInterceptor(s.unaryInterceptor),
		grpc.WithChainStreamInterceptor(s.streamInterceptor),
	}
	if s.lb != "" {
		dopts = append(dopts, grpc.WithDefaultServiceConfig(`{"loadBalancingConfig":`+s.lb+`}`))
	}
	return dopts, nil
}

func (s *suite) unaryInterceptor(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	opts, err := marked(opts)
	if err != nil {
		return err
	}
	if s.noKey != nil {
		// Resolved here, the policy is in State for every layer. A method
		// that requires a key, or does not resolve, takes the whole chain,
		// whose first layer reports the failure.
		if p, err := s.resolver.Resolve(method); err == nil && !p.RequiresKey {
			n := s.noKey.Start(invoker)
			n.Resolver, n.Policy = s.resolver, p
			return n.Invoke(ctx, method, req, reply, cc, opts...)
		}
	}
	return s.unary.Start(invoker).Invoke(ctx, method, req, reply, cc, opts...)
}

func (s *suite) streamInterceptor(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	opts, err := marked(opts)
	if err != nil {
		return nil, err
	}
	return s.stream.Start(streamer).NewStream(ctx, desc, cc, method, opts...)
}

// build validates the options and builds the suite.
func build(opts []Option) (*suite, error) {
	c := &config{}
	if err := apply(c, "Option", opts); err != nil {
		return nil, err
	}
	if c.resolver == nil {
		c.resolver = policy.Default()
	}
	if !c.latePolicies {
		if err := checkPolicies(c.resolver, "failsoft.WithLatePolicies()"); err != nil {
			return nil, err
		}
	}
	if c.clock == nil {
		c.clock = clock.System()
	}

	// Telemetry is built first: its call span is the outermost layer, its
	// attempt span sits inside all the others but pushback marking, and
	// every other layer reports to it.
	var tel *telemetry.Interceptor
	if c.telemetry.enabled(true) {
		var err error
		tel, err = telemetry.New(append([]telemetry.Option{telemetry.WithClock(c.clock)}, c.telemetry.opts...)...)
		if err != nil {
			return nil, layerError("failsoft: telemetry layer", err)
		}
		if tel.Enabled() {
			c.observer = observe.Multi(tel, c.observer)
		} else {
			tel = nil // no-op providers: nothing to record, nothing to run
		}
	}
	r, o, k := c.resolver, c.observer, c.clock
	warnUnmatched(r, o)
	dl, dlErr := layerOf(layerDeadline, &c.deadline, true,
		[]deadline.Option{deadline.WithResolver(r), deadline.WithObserver(o), deadline.WithClock(k)}, deadline.New)
	key, keyErr := layerOf(layerKey, &c.key, true,
		[]idempotency.Option{idempotency.WithResolver(r), idempotency.WithObserver(o)}, idempotency.New)
	fb, fbErr := layerOf(layerFallback, &c.fallback, true,
		[]fallback.Option{fallback.WithResolver(r), fallback.WithObserver(o), fallback.WithClock(k)}, fallback.New)
	rt, rtErr := layerOf(layerRetry, &c.retry, true,
		[]retry.Option{retry.WithResolver(r), retry.WithObserver(o), retry.WithClock(k)}, retry.New)
	th, thErr := layerOf(layerThrottle, &c.throttle, true,
		[]throttle.Option{throttle.WithObserver(o), throttle.WithClock(k)}, throttle.New)
	br, brErr := layerOf(layerBreaker, &c.breaker, true,
		[]breaker.Option{breaker.WithResolver(r), breaker.WithObserver(o), breaker.WithClock(k)}, breaker.New)
	bh, bhErr := layerOf(layerBulkhead, &c.bulkhead, false,
		[]bulkhead.Option{bulkhead.WithObserver(o), bulkhead.WithClock(k)}, bulkhead.New)
	if err := errors.Join(dlErr, keyErr, fbErr, rtErr, thErr, brErr, bhErr); err != nil {
		return nil, err
	}

	// A nil *telemetry.Interceptor in an interface is not nil: keep the
	// list's "off" the same for every layer.
	var telLayer any
	if tel != nil {
		telLayer = tel
	}
	var (
		errs      []error
		unary     []chain.Unary
		noKey     []chain.Unary // unary without the idempotency layer
		stream    []chain.Stream
		innermost grpc.UnaryClientInterceptor
	)
	for _, l := range []struct {
		kind chain.Kind
		v    any
	}{
		{chain.TelemetryCall, telLayer},
		{chain.Deadline, dl},
		{chain.Idempotency, key},
		{chain.Fallback, fb},
		{chain.Retry, rt},
		{chain.Throttle, th},
		{chain.Breaker, br},
		{chain.Bulkhead, bh},
		{chain.TelemetryAttempt, telLayer},
		// Pushback marking is innermost: every layer that classifies
		// attempts (attempt span, throttle, breaker, retry, fallback) sits
		// outside it, so a live server's pushback reaches all of them as
		// overload. It is on whatever the layers: it holds no state and
		// costs nothing on success. Its unary half is the chain's
		// innermost interceptor (chain.Unaries.Inside), so it stays last.
		{chain.Pushback, struct{}{}},
	} {
		if l.v == nil {
			continue // switched off
		}
		layer, err := chain.Lookup(l.kind, l.v)
		switch {
		case err != nil:
			errs = append(errs, err)
		case layer.UnaryInnermost != nil:
			innermost, stream = layer.UnaryInnermost, append(stream, layer.Stream)
		case !layer.Empty():
			unary, stream = append(unary, layer.Unary), append(stream, layer.Stream)
			if l.kind != chain.Idempotency {
				noKey = append(noKey, layer.Unary)
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	fold := func(layers []chain.Unary) *chain.Unaries {
		u := chain.NewUnaries(layers...)
		if innermost != nil {
			u = u.Inside(innermost)
		}
		return u
	}
	s := &suite{unary: fold(unary), stream: chain.NewStreams(stream...), resolver: r, lb: DefaultLoadBalancing}
	if c.lb != nil {
		s.lb = *c.lb
	}
	if s.lb != "" && !c.noOutlier {
		s.lb = outlier.Around(s.lb)
	}
	if len(noKey) < len(unary) {
		s.noKey = fold(noKey)
	}
	return s, nil
}

// apply runs every option on c and joins all their errors. Unlike the
// layers, which skip nil options, the suite refuses them: a nil in the
// list that assembles a whole suite is a mistake worth naming.
func apply[C any, O ~func(*C) error](c *C, kind string, opts []O) error {
	var errs []error
	for _, o := range opts {
		if o == nil {
			errs = append(errs, fmt.Errorf("failsoft: nil %s", kind))
			continue
		}
		if err := o(c); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// errTwoSuites is returned when a connection carries two suites, which
// would multiply retries and count every breaker twice. grpc-go gives no
// way to inspect other dial options at dial time, so this is found on the
// first call.
var errTwoSuites = status.Error(codes.FailedPrecondition,
	"failsoft: two failsoft suites are installed on this connection; use DialOptions once per connection")

// marked returns a call's options with the suite's marker added
// (chain.Mark), or errTwoSuites if they already carry one: another suite,
// or the same one installed twice, is outside this one.
func marked(opts []grpc.CallOption) ([]grpc.CallOption, error) {
	opts, ok := chain.Mark(opts)
	if !ok {
		return nil, errTwoSuites
	}
	return opts, nil
}
