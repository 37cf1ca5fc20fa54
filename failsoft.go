package failsoft

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/failsoft/failsoft/interceptors/clock"
	"github.com/failsoft/failsoft/interceptors/deadline"
	"github.com/failsoft/failsoft/interceptors/observe"
	"github.com/failsoft/failsoft/interceptors/policy"
	"github.com/failsoft/failsoft/interceptors/throttle"
)

// Option configures the client suite built by DialOptions.
type Option func(*config) error

// layer names, in chain order, used in error messages.
const (
	layerDeadline = "deadline"
	layerThrottle = "throttle"
)

type config struct {
	resolver *policy.Resolver
	observer observe.Observer
	clock    clock.Clock

	set map[string]bool // layers configured with WithX or WithoutX

	deadlineOff bool
	deadline    []deadline.Option
	throttleOff bool
	throttle    []throttle.Option
}

// configure records that a layer was configured, refusing a second time:
// two configurations of one layer are almost always a mistake in assembling
// options, and silently letting one win hides it.
func (c *config) configure(layer string) error {
	if c.set[layer] {
		return fmt.Errorf("failsoft: the %s layer is configured twice", layer)
	}
	c.set[layer] = true
	return nil
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

// WithDeadline configures the deadline layer.
func WithDeadline(opts ...deadline.Option) Option {
	return func(c *config) error {
		c.deadline = opts
		return c.configure(layerDeadline)
	}
}

// WithoutDeadline switches the deadline layer off.
func WithoutDeadline() Option {
	return func(c *config) error {
		c.deadlineOff = true
		return c.configure(layerDeadline)
	}
}

// WithThrottle configures the adaptive throttle.
func WithThrottle(opts ...throttle.Option) Option {
	return func(c *config) error {
		c.throttle = opts
		return c.configure(layerThrottle)
	}
}

// WithoutThrottle switches the adaptive throttle off.
func WithoutThrottle() Option {
	return func(c *config) error {
		c.throttleOff = true
		return c.configure(layerThrottle)
	}
}

// chain collects the interceptors of the enabled layers, outermost first.
type chain struct {
	unary  []grpc.UnaryClientInterceptor
	stream []grpc.StreamClientInterceptor
}

type clientLayer interface {
	UnaryClientInterceptor() grpc.UnaryClientInterceptor
	StreamClientInterceptor() grpc.StreamClientInterceptor
}

func (ch *chain) add(l clientLayer) {
	ch.unary = append(ch.unary, l.UnaryClientInterceptor())
	ch.stream = append(ch.stream, l.StreamClientInterceptor())
}

// DialOptions returns the dial options that install the failsoft client
// suite on a connection: every layer's unary and stream interceptors,
// chained in the order documented in the package comment, and
// grpc.WithDisableRetry so that grpc-go's service-config retries do not
// multiply the suite's attempts (gRPC's transparent retries stay on).
//
// Invalid options give an error naming the option; nothing is returned
// half-built. Pass the result to grpc.NewClient along with the dial
// options you already use.
func DialOptions(opts ...Option) ([]grpc.DialOption, error) {
	c := &config{set: map[string]bool{}}
	var errs []error
	for _, o := range opts {
		if o == nil {
			errs = append(errs, errors.New("failsoft: nil Option"))
			continue
		}
		if err := o(c); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	if c.resolver == nil {
		c.resolver = policy.Default()
	}
	if c.clock == nil {
		c.clock = clock.System()
	}

	id := new(byte)
	gu, gs := guard(id)
	ch := &chain{unary: []grpc.UnaryClientInterceptor{gu}, stream: []grpc.StreamClientInterceptor{gs}}

	if !c.deadlineOff {
		d, err := deadline.New(append([]deadline.Option{
			deadline.WithResolver(c.resolver), deadline.WithObserver(c.observer), deadline.WithClock(c.clock),
		}, c.deadline...)...)
		if err != nil {
			return nil, fmt.Errorf("failsoft: deadline layer: %w", err)
		}
		ch.add(d)
	}
	if !c.throttleOff {
		t, err := throttle.New(append([]throttle.Option{
			throttle.WithObserver(c.observer), throttle.WithClock(c.clock),
		}, c.throttle...)...)
		if err != nil {
			return nil, fmt.Errorf("failsoft: throttle layer: %w", err)
		}
		ch.add(t)
	}

	return []grpc.DialOption{
		grpc.WithDisableRetry(),
		grpc.WithDefaultCallOptions(suiteMarker{id: id}),
		grpc.WithChainUnaryInterceptor(ch.unary...),
		grpc.WithChainStreamInterceptor(ch.stream...),
	}, nil
}

// suiteMarker is a default call option that each suite adds to its
// connection. grpc-go hands default call options to every interceptor, so a
// suite that sees another suite's marker knows two suites are chained.
// Scanning the options costs no allocation, unlike a context value.
type suiteMarker struct {
	grpc.EmptyCallOption
	id *byte
}

// errTwoSuites is returned when a connection carries two suites, which
// would multiply retries and count every breaker twice. grpc-go gives no
// way to inspect other dial options at dial time, so this is found on the
// first call.
var errTwoSuites = status.Error(codes.FailedPrecondition,
	"failsoft: two failsoft suites are installed on this connection; use DialOptions once per connection")

func otherSuite(id *byte, opts []grpc.CallOption) bool {
	for _, o := range opts {
		if m, ok := o.(suiteMarker); ok && m.id != id {
			return true
		}
	}
	return false
}

func guard(id *byte) (grpc.UnaryClientInterceptor, grpc.StreamClientInterceptor) {
	unary := func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		if otherSuite(id, opts) {
			return errTwoSuites
		}
		return invoker(ctx, method, req, reply, cc, opts...)
	}
	stream := func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
		if otherSuite(id, opts) {
			return nil, errTwoSuites
		}
		return streamer(ctx, desc, cc, method, opts...)
	}
	return unary, stream
}
