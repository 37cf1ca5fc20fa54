package failsoft

import (
	"errors"

	"google.golang.org/grpc"

	"github.com/failsoft/failsoft/interceptors/deadline"
	"github.com/failsoft/failsoft/interceptors/idempotency"
	"github.com/failsoft/failsoft/interceptors/observe"
	"github.com/failsoft/failsoft/interceptors/policy"
	"github.com/failsoft/failsoft/interceptors/telemetry"
)

// ServerOption configures the server suite built by ServerOptions.
type ServerOption func(*serverConfig) error

type serverConfig struct {
	resolver  *policy.Resolver
	observer  observe.Observer
	telemetry layer[telemetry.Option]
	deadline  layer[deadline.Option]
	key       layer[idempotency.ServerOption]
	// latePolicies: leave invalid policies to each method's first call
	// (WithServerLatePolicies) instead of refusing them here.
	latePolicies bool
}

// WithServerResolver makes the server layers read method policies from r.
func WithServerResolver(r *policy.Resolver) ServerOption {
	return func(c *serverConfig) error {
		if r == nil {
			return errors.New("failsoft.WithServerResolver: nil resolver")
		}
		if c.resolver != nil {
			return errors.New("failsoft.WithServerResolver: given twice")
		}
		c.resolver = r
		return nil
	}
}

// WithServerObserver makes the server layers report to o.
func WithServerObserver(o observe.Observer) ServerOption {
	return func(c *serverConfig) error {
		if o == nil {
			return errors.New("failsoft.WithServerObserver: nil observer")
		}
		c.observer = observe.Multi(c.observer, o)
		return nil
	}
}

// WithServerTelemetry configures server spans (on by default, with the
// global providers): each call continues the caller's trace, and replays of
// stored results are recorded on it.
func WithServerTelemetry(opts ...telemetry.Option) ServerOption {
	return func(c *serverConfig) error { return c.telemetry.configure(layerTelemetry, false, opts) }
}

// WithoutServerTelemetry switches server spans off.
func WithoutServerTelemetry() ServerOption {
	return func(c *serverConfig) error { return c.telemetry.configure(layerTelemetry, true, nil) }
}

// WithServerDeadline configures the server deadline layer (on by default):
// calls a handler makes with its incoming context give up a safety margin
// before the handler's own caller does.
func WithServerDeadline(opts ...deadline.Option) ServerOption {
	return func(c *serverConfig) error { return c.deadline.configure(layerDeadline, false, opts) }
}

// WithoutServerDeadline switches the server deadline layer off.
func WithoutServerDeadline() ServerOption {
	return func(c *serverConfig) error { return c.deadline.configure(layerDeadline, true, nil) }
}

// WithServerIdempotency configures request deduplication by idempotency
// key (on by default, with the in-memory store; give a shared store such as
// redisstore for services with several replicas).
func WithServerIdempotency(opts ...idempotency.ServerOption) ServerOption {
	return func(c *serverConfig) error { return c.key.configure(layerKey, false, opts) }
}

// WithoutServerIdempotency switches deduplication off.
func WithoutServerIdempotency() ServerOption {
	return func(c *serverConfig) error { return c.key.configure(layerKey, true, nil) }
}

type serverLayer interface {
	UnaryServerInterceptor() grpc.UnaryServerInterceptor
	StreamServerInterceptor() grpc.StreamServerInterceptor
}

// ServerOptions returns the server options that install failsoft's server
// side: the server span (outermost, so every decision below lands in the
// caller's trace), the deadline layer (so deduplication and the handler
// both run under the shortened deadline), then deduplication by
// idempotency key. Pass them to grpc.NewServer; put authentication
// interceptors before them, since the idempotency store keys results by
// caller identity.
func ServerOptions(opts ...ServerOption) ([]grpc.ServerOption, error) {
	c := &serverConfig{}
	if err := apply(c, "ServerOption", opts); err != nil {
		return nil, err
	}
	var errs []error
	if c.resolver == nil {
		c.resolver = policy.Default()
	}
	if !c.latePolicies {
		if err := checkPolicies(c.resolver, "failsoft.WithServerLatePolicies()"); err != nil {
			return nil, err
		}
	}
	var unary []grpc.UnaryServerInterceptor
	var stream []grpc.StreamServerInterceptor
	addServer := func(name string, l serverLayer, err error) {
		if err != nil {
			errs = append(errs, layerError("failsoft: server "+name+" layer", err))
			return
		}
		unary = append(unary, l.UnaryServerInterceptor())
		stream = append(stream, l.StreamServerInterceptor())
	}
	if c.telemetry.enabled(true) {
		t, err := telemetry.New(c.telemetry.opts...)
		addServer(layerTelemetry, t, err)
		if err == nil {
			c.observer = observe.Multi(t, c.observer)
		}
	}
	warnUnmatched(c.resolver, c.observer)
	if c.deadline.enabled(true) {
		d, err := deadline.New(append([]deadline.Option{deadline.WithResolver(c.resolver), deadline.WithObserver(c.observer)}, c.deadline.opts...)...)
		addServer(layerDeadline, d, err)
	}
	if c.key.enabled(true) {
		k, err := idempotency.NewServer(append([]idempotency.ServerOption{idempotency.WithResolver(c.resolver), idempotency.WithObserver(c.observer)}, c.key.opts...)...)
		addServer(layerKey, k, err)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return []grpc.ServerOption{grpc.ChainUnaryInterceptor(unary...), grpc.ChainStreamInterceptor(stream...)}, nil
}
