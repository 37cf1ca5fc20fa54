package fallback

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/failsoft/failsoft/interceptors/clock"
	"github.com/failsoft/failsoft/interceptors/internal/common"
	"github.com/failsoft/failsoft/interceptors/observe"
	"github.com/failsoft/failsoft/interceptors/outcome"
	"github.com/failsoft/failsoft/interceptors/policy"
)

// Defaults of the last-good-response cache.
const (
	DefaultCacheEntries = 1000
	DefaultCacheMaxAge  = 5 * time.Minute
)

// Func answers a call in place of the server. It fills reply (of the
// method's response type) and returns nil, or returns an error to let the
// next level try. cause is the error the call ended with.
type Func func(ctx context.Context, method string, req, reply any, cause error) error

// Typed adapts a function over the method's own message types to a Func.
func Typed[Req, Resp proto.Message](f func(ctx context.Context, req Req, cause error) (Resp, error)) Func {
	return func(ctx context.Context, _ string, req, reply any, cause error) error {
		r, ok := req.(Req)
		if !ok {
			return fmt.Errorf("fallback.Typed: request is %T", req)
		}
		out, ok := reply.(proto.Message)
		if !ok {
			return fmt.Errorf("fallback.Typed: reply is %T", reply)
		}
		resp, err := f(ctx, r, cause)
		if err != nil {
			return err
		}
		if resp.ProtoReflect().Descriptor() != out.ProtoReflect().Descriptor() {
			return fmt.Errorf("fallback.Typed: %s returned for %s", resp.ProtoReflect().Descriptor().FullName(), out.ProtoReflect().Descriptor().FullName())
		}
		proto.Reset(out)
		proto.Merge(out, resp)
		return nil
	}
}

// Option configures an Interceptor.
type Option func(*config) error

type config struct {
	common.Config
	when         func(ctx context.Context, err error) bool
	chains       map[string]*plan // by full method name
	services     map[string]*plan // by service name, from "/pkg.Service/*"
	cacheEntries int
	cacheMaxAge  time.Duration
}

// plan is what one method (or service) falls back to, in order.
type plan struct {
	fn     Func
	cache  bool
	static proto.Message
}

func defaultConfig() config {
	return config{
		Config:       common.Config{Resolver: policy.Default(), Clock: clock.System()},
		when:         DefaultWhen,
		chains:       map[string]*plan{},
		services:     map[string]*plan{},
		cacheEntries: DefaultCacheEntries,
		cacheMaxAge:  DefaultCacheMaxAge,
	}
}

// DefaultWhen is when the chain is tried by default: the call was rejected
// locally by a failsoft layer (an open breaker, a full bulkhead, ...), or
// it failed with an error that outcome.Default classifies as Failure or
// Overload, and the caller did not cancel it.
func DefaultWhen(ctx context.Context, err error) bool {
	if _, ok := outcome.AsRejection(err); ok {
		return true
	}
	if errors.Is(ctx.Err(), context.Canceled) {
		return false
	}
	switch outcome.Default.Classify(err) {
	case outcome.Failure, outcome.Overload:
		return true
	}
	return false
}

// chainFor returns the chain of a pattern: a full method name
// "/pkg.Service/Method", or "/pkg.Service/*" for every method of a service.
func (c *config) chainFor(pattern, option string) (*plan, error) {
	if svc, ok := strings.CutSuffix(pattern, "/*"); ok && len(svc) > 1 && svc[0] == '/' && !strings.Contains(svc[1:], "/") {
		if c.services[svc[1:]] == nil {
			c.services[svc[1:]] = &plan{}
		}
		return c.services[svc[1:]], nil
	}
	if _, _, ok := policy.SplitMethod(pattern); !ok {
		return nil, fmt.Errorf("fallback.%s(%q): want a full method name such as /pkg.v1.Service/Method, or /pkg.v1.Service/*", option, pattern)
	}
	if c.chains[pattern] == nil {
		c.chains[pattern] = &plan{}
	}
	return c.chains[pattern], nil
}

// WithFunc makes f the first level of the chain of method (a full method
// name, or "/pkg.Service/*" for a whole service).
func WithFunc(method string, f Func) Option {
	return func(c *config) error {
		if f == nil {
			return fmt.Errorf("fallback.WithFunc(%q): nil function", method)
		}
		ch, err := c.chainFor(method, "WithFunc")
		if err != nil {
			return err
		}
		ch.fn = f
		return nil
	}
}

// WithCache makes the last good response for the same request the second
// level of the chain of method. Only methods with NO_SIDE_EFFECTS are
// cached: New refuses a named method that is not, and a service pattern
// caches only its methods that are. Successful responses are stored keyed
// by method and the deterministically marshalled request.
func WithCache(method string) Option {
	return func(c *config) error {
		ch, err := c.chainFor(method, "WithCache")
		if err != nil {
			return err
		}
		ch.cache = true
		return nil
	}
}

// WithStatic makes a copy of reply the last level of the chain of method.
// reply must be of the method's response type; calls whose reply is of
// another type skip this level.
func WithStatic(method string, reply proto.Message) Option {
	return func(c *config) error {
		if reply == nil {
			return fmt.Errorf("fallback.WithStatic(%q): nil reply", method)
		}
		ch, err := c.chainFor(method, "WithStatic")
		if err != nil {
			return err
		}
		ch.static = proto.Clone(reply)
		return nil
	}
}

// CacheLimits bounds the last-good-response cache: at most entries
// responses (the least recently used go first), none older than maxAge.
// Defaults 1000 and 5 minutes.
func CacheLimits(entries int, maxAge time.Duration) Option {
	return func(c *config) error {
		if entries < 1 || maxAge <= 0 {
			return fmt.Errorf("fallback.CacheLimits(%d, %v): want at least one entry and a positive age", entries, maxAge)
		}
		c.cacheEntries, c.cacheMaxAge = entries, maxAge
		return nil
	}
}

// When sets which errors the chain answers. Default: DefaultWhen.
func When(f func(ctx context.Context, err error) bool) Option {
	return func(c *config) error {
		if f == nil {
			return errors.New("fallback.When: nil function")
		}
		c.when = f
		return nil
	}
}

// WithResolver sets the policy resolver that says which methods have no
// side effects. Default: policy.Default().
func WithResolver(r *policy.Resolver) Option { return common.Resolver[config]("fallback", r) }

// WithObserver reports every degraded answer (observe.Fallback, Reason the
// level) to o. Nil, the default, reports nothing.
func WithObserver(o observe.Observer) Option { return common.Observer[config](o) }

// WithClock sets the clock that ages cached responses. Default: the system
// clock.
func WithClock(clk clock.Clock) Option { return common.Clock[config]("fallback", clk) }
