package harness

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/failsafe-go/failsafe-go"
	"github.com/failsafe-go/failsafe-go/circuitbreaker"
	"github.com/failsafe-go/failsafe-go/failsafegrpc"
	"github.com/failsafe-go/failsafe-go/hedgepolicy"
	"github.com/failsafe-go/failsafe-go/timeout"
	grpcretry "github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/retry"
	grpctimeout "github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/timeout"
	"github.com/sony/gobreaker/v2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

// Params are the resilience settings every chain is given, so that the
// chains differ in how they behave, not in how they are tuned.
type Params struct {
	// Attempts per logical call, counting the first one.
	Attempts int
	// Timeout of a whole logical call.
	Timeout time.Duration
	// Backoff before the first retry; it doubles up to MaxBackoff.
	Backoff, MaxBackoff time.Duration
	// BreakerFailures consecutive failures open a breaker, which probes
	// again after BreakerDelay.
	BreakerFailures int
	BreakerDelay    time.Duration
	// Hedge asks the chain to hedge reads: a second attempt after
	// HedgeDelay. Chains that cannot hedge ignore it and say so.
	Hedge      bool
	HedgeDelay time.Duration
	// Failsoft is how failsoft is set up; the peers always get the
	// settings above.
	Failsoft Setup
}

// Setup is how failsoft is configured in a measurement.
type Setup int

const (
	// BenchSettings gives failsoft the settings of Params, through a
	// resolver and its breaker's open time: the cost table and the slow
	// tail.
	BenchSettings Setup = iota
	// LibraryDefaults is failsoft as a new user installs it: the README's
	// Charge policy (requires_idempotency_key only) given in code for the
	// charge method, everything else the library's defaults. The failure
	// modes use it.
	LibraryDefaults
	// ReadmeBreaker is LibraryDefaults with the README's breaker rule,
	// breaker.FailuresWithin(5, 30*time.Second).
	ReadmeBreaker
	// NoBreaker is LibraryDefaults without the breaker
	// (failsoft.WithoutBreaker).
	NoBreaker
)

func (s Setup) String() string {
	switch s {
	case LibraryDefaults:
		return "library defaults"
	case ReadmeBreaker:
		return "the README's breaker rule, FailuresWithin(5, 30s)"
	case NoBreaker:
		return "library defaults without the breaker"
	}
	return "the bench's settings"
}

// DefaultParams are the settings of the published table.
func DefaultParams() Params {
	return Params{
		Attempts:        3,
		Timeout:         time.Second,
		Backoff:         10 * time.Millisecond,
		MaxBackoff:      100 * time.Millisecond,
		BreakerFailures: 5,
		BreakerDelay:    time.Second,
		HedgeDelay:      20 * time.Millisecond,
	}
}

// Chain is one client stack, built fresh for each scenario so that no
// state (breaker, budget) leaks between scenarios.
type Chain struct {
	// Unary interceptors, outermost first.
	Unary []grpc.UnaryClientInterceptor
	// Dial options besides the interceptors.
	Dial []grpc.DialOption
	// ServiceConfig holds members of a default service config (JSON,
	// without the braces), which the connection's own load-balancing
	// policy joins.
	ServiceConfig string
	// Hedges reports whether the chain hedges reads.
	Hedges bool
	// BreakerOpens counts transitions to open; nil when the chain has no
	// breaker.
	BreakerOpens *atomic.Int64
	// CallerTimeout, when set, is a timeout the caller puts on every call
	// of the Go benchmarks itself, paying context.WithTimeout per call.
	CallerTimeout time.Duration
}

// Spec names a chain and builds it.
type Spec struct {
	Name string
	// Build returns the chain for p. ErrPending means the chain cannot be
	// built yet; its row shows "pending".
	Build func(p Params) (*Chain, error)
	// Interceptors reports whether the chain's logic lives in interceptors
	// (false for grpc-go's built-in retry, which lives in the transport and
	// cannot be measured over a no-op invoker). For the plain client the
	// measurement is the floor every chain pays: ClientConn.Invoke and the
	// benchmark's terminal interceptor.
	Interceptors bool
	// MicroOnly rows run the Go benchmarks only: they are references for
	// the cost of a call, not chains that handle failures.
	MicroOnly bool
}

// ErrPending marks a chain whose packages are not available yet.
var ErrPending = errors.New("pending")

// Specs returns every chain compared, the plain client first and failsoft
// last.
func Specs() []Spec {
	return []Spec{
		{Name: "plain client", Build: plain, Interceptors: true},
		{Name: PlainDeadline, Build: plainDeadline, Interceptors: true, MicroOnly: true},
		{Name: "go-grpc-middleware retry + timeout", Build: middlewareRetryTimeout, Interceptors: true},
		{Name: "go-grpc-middleware retry + gobreaker", Build: middlewareRetryGobreaker, Interceptors: true},
		{Name: "failsafe-go retry + breaker + timeout", Build: failsafeChain, Interceptors: true},
		{Name: "grpc-go built-in retry", Build: func(p Params) (*Chain, error) { return builtinRetry(p, false) }},
		{Name: "grpc-go built-in retry + throttling", Build: func(p Params) (*Chain, error) { return builtinRetry(p, true) }},
		{Name: GoalsChain, Build: failsoftGoalsChain, Interceptors: true, MicroOnly: true},
		{Name: Failsoft, Build: failsoftChain, Interceptors: true},
	}
}

func plain(Params) (*Chain, error) { return &Chain{}, nil }

// PlainDeadline names the plain client whose caller sets the call deadline
// itself, as every chain here does: the fair floor for the chains' cost,
// since gRPC does more work for a call that has a deadline.
const PlainDeadline = "plain client, caller deadline"

func plainDeadline(p Params) (*Chain, error) { return &Chain{CallerTimeout: p.Timeout}, nil }

// retryCodes are the codes every peer retries: go-grpc-middleware's
// defaults, which failsafegrpc's default retry policy also covers.
var retryCodes = []codes.Code{codes.Unavailable, codes.ResourceExhausted}

func middlewareRetry(p Params) grpc.UnaryClientInterceptor {
	return grpcretry.UnaryClientInterceptor(
		grpcretry.WithMax(uint(p.Attempts)),
		grpcretry.WithCodes(retryCodes...),
		// attempt n (1 for the first retry) waits Backoff/2 * 2^n: Backoff,
		// 2*Backoff, ... with 10% jitter, capped.
		grpcretry.WithBackoff(grpcretry.BackoffExponentialWithJitterBounded(p.Backoff/2, 0.1, p.MaxBackoff)),
	)
}

func middlewareRetryTimeout(p Params) (*Chain, error) {
	return &Chain{Unary: []grpc.UnaryClientInterceptor{
		grpctimeout.UnaryClientInterceptor(p.Timeout),
		middlewareRetry(p),
	}}, nil
}

func middlewareRetryGobreaker(p Params) (*Chain, error) {
	opens := new(atomic.Int64)
	cb := gobreaker.NewTwoStepCircuitBreaker[struct{}](gobreaker.Settings{
		Name:    "bench",
		Timeout: p.BreakerDelay,
		ReadyToTrip: func(c gobreaker.Counts) bool {
			return c.ConsecutiveFailures >= uint32(p.BreakerFailures)
		},
		OnStateChange: func(_ string, _, to gobreaker.State) {
			if to == gobreaker.StateOpen {
				opens.Add(1)
			}
		},
	})
	return &Chain{
		Unary:        []grpc.UnaryClientInterceptor{middlewareRetry(p), gobreakerInterceptor(cb)},
		BreakerOpens: opens,
	}, nil
}

// gobreakerInterceptor is how gobreaker is used with gRPC: gobreaker ships
// no interceptor, so users write this one. An open breaker fails the call
// with UNAVAILABLE, which the retry interceptor above it may retry.
func gobreakerInterceptor(cb *gobreaker.TwoStepCircuitBreaker[struct{}]) grpc.UnaryClientInterceptor {
	return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		done, err := cb.Allow()
		if err != nil {
			return status.Error(codes.Unavailable, err.Error())
		}
		err = invoker(ctx, method, req, reply, cc, opts...)
		done(err)
		return err
	}
}

func failsafeChain(p Params) (*Chain, error) {
	opens := new(atomic.Int64)
	rp := failsafegrpc.NewRetryPolicyBuilder[any]().
		WithMaxAttempts(p.Attempts).
		WithBackoff(p.Backoff, p.MaxBackoff).
		WithJitterFactor(0.1).
		ReturnLastFailure().
		Build()
	cb := circuitbreaker.NewBuilder[any]().
		WithFailureThreshold(uint(p.BreakerFailures)).
		WithDelay(p.BreakerDelay).
		OnOpen(func(circuitbreaker.StateChangedEvent) { opens.Add(1) }).
		Build()
	to := timeout.New[any](p.Timeout)
	// failsafe-go's documented order: retry (or hedge) outside the
	// breaker, the timeout innermost.
	policies := []failsafe.Policy[any]{rp}
	if p.Hedge {
		policies = append(policies, hedgepolicy.NewBuilderWithDelay[any](p.HedgeDelay).WithMaxHedges(1).Build())
	}
	policies = append(policies, cb, to)
	return &Chain{
		Unary:        []grpc.UnaryClientInterceptor{failsafegrpc.NewUnaryClientInterceptor(policies...)},
		Hedges:       p.Hedge,
		BreakerOpens: opens,
	}, nil
}

// builtinRetry is grpc-go's own retry (gRFC A6), configured through the
// default service config; throttling adds its per-channel token bucket
// with grpc-go's documented example values.
func builtinRetry(p Params, throttling bool) (*Chain, error) {
	sc := fmt.Sprintf(`"methodConfig":[{"name":[{"service":%q},{"service":%q}],"timeout":%q,"retryPolicy":{`+
		`"maxAttempts":%d,"initialBackoff":%q,"maxBackoff":%q,"backoffMultiplier":2,`+
		`"retryableStatusCodes":["UNAVAILABLE","RESOURCE_EXHAUSTED"]}}]`,
		benchService, plainServiceName, seconds(p.Timeout), p.Attempts, seconds(p.Backoff), seconds(p.MaxBackoff))
	if throttling {
		sc += `,"retryThrottling":{"maxTokens":10,"tokenRatio":0.1}`
	}
	return &Chain{ServiceConfig: sc}, nil
}

// dialOptions are the options of a connection through c. With
// roundRobin, the round_robin load-balancing policy comes first, in the
// default service config (with the chain's own members, if any), so that a
// chain whose dial options choose a policy of their own (failsoft's
// DialOptions may) keeps its choice: grpc-go applies the last default
// service config given. Then the chain's options, its interceptors and
// the credentials.
func (c *Chain) dialOptions(roundRobin bool) []grpc.DialOption {
	var members []string
	if roundRobin {
		members = append(members, `"loadBalancingConfig":[{"round_robin":{}}]`)
	}
	if c.ServiceConfig != "" {
		members = append(members, c.ServiceConfig)
	}
	var opts []grpc.DialOption
	if len(members) > 0 {
		opts = append(opts, grpc.WithDefaultServiceConfig("{"+strings.Join(members, ",")+"}"))
	}
	opts = append(opts, c.Dial...)
	if len(c.Unary) > 0 {
		opts = append(opts, grpc.WithChainUnaryInterceptor(c.Unary...))
	}
	return append(opts, grpc.WithTransportCredentials(insecure.NewCredentials()))
}

func seconds(d time.Duration) string { return fmt.Sprintf("%gs", d.Seconds()) }
