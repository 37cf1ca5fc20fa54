package idempotency

import (
	"context"
	"errors"
	"fmt"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/failsoft/failsoft/interceptors/clock"
	"github.com/failsoft/failsoft/interceptors/internal/common"
	"github.com/failsoft/failsoft/interceptors/observe"
	"github.com/failsoft/failsoft/interceptors/policy"
)

// Defaults of the server interceptor.
const (
	// DefaultTTL is how long a stored outcome is kept, as in Stripe's API.
	DefaultTTL = 24 * time.Hour
	// DefaultLease is how long a claim protects a handler without being
	// renewed: the server renews it every third of a lease while the
	// handler runs, so it bounds how long the key of a crashed process
	// stays claimed.
	DefaultLease = time.Minute
	// DefaultMaxWaiters bounds the requests of one server that wait for a
	// claim in flight with their key; more are answered ABORTED.
	DefaultMaxWaiters = 1000
	// DefaultStoreTimeout bounds the writes that record an outcome after the
	// handler returned; they run even if the caller has gone away.
	DefaultStoreTimeout = 5 * time.Second
)

// DefaultStoredCodes are the codes whose outcome the server stores and
// replays: success, and the errors that are a final answer to the request.
//
//	stored (final)        OK, NOT_FOUND, ALREADY_EXISTS, FAILED_PRECONDITION,
//	                      OUT_OF_RANGE, INTERNAL, UNKNOWN, DATA_LOSS
//	not stored: rejected  INVALID_ARGUMENT, UNAUTHENTICATED, PERMISSION_DENIED,
//	before execution      UNIMPLEMENTED
//	not stored: transient CANCELLED, DEADLINE_EXCEEDED, UNAVAILABLE,
//	                      RESOURCE_EXHAUSTED, ABORTED
//
// This follows Stripe ("results are only saved if an API endpoint started
// executing"; failed validation saves nothing, and 500 errors are saved
// because the endpoint may have had effects) and the IETF Idempotency-Key
// draft (a request rejected before it was processed may be retried with the
// same key). A handler that fails before any side effect and wants the
// client to retry with the same key returns one of the transient codes;
// INTERNAL, UNKNOWN and DATA_LOSS are stored because the handler may have
// done part of its work, and running it again could do that part twice.
// A handler that returns a transient code after its effects committed
// calls Commit first, so that its outcome is stored all the same.
var DefaultStoredCodes = policy.Codes(
	codes.OK, codes.NotFound, codes.AlreadyExists, codes.FailedPrecondition,
	codes.OutOfRange, codes.Internal, codes.Unknown, codes.DataLoss,
)

// Option configures the client interceptor (New).
type Option interface{ applyClient(*clientConfig) error }

// ServerOption configures the server interceptor (NewServer).
type ServerOption interface{ applyServer(*serverConfig) error }

// CommonOption configures either side.
type CommonOption interface {
	Option
	ServerOption
}

type clientConfig struct {
	common.Config // resolver and observer
	rawKeys       bool
}

type serverConfig struct {
	common.Config
	store        Store
	identity     IdentityFunc
	ttl          time.Duration
	lease        time.Duration
	storeTimeout time.Duration
	failOpen     bool
	stored       policy.CodeSet
	types        *protoregistry.Types
	rawKeys      bool
	maxWaiters   int
}

type clientOption func(*clientConfig) error

func (o clientOption) applyClient(c *clientConfig) error { return o(c) }

type serverOption func(*serverConfig) error

func (o serverOption) applyServer(c *serverConfig) error { return o(c) }

type commonOption struct {
	client clientOption
	server serverOption
}

func (o commonOption) applyClient(c *clientConfig) error { return o.client(c) }
func (o commonOption) applyServer(c *serverConfig) error { return o.server(c) }

// WithResolver sets the policy resolver that says which methods require a
// key (policy.Default() when not given).
func WithResolver(r *policy.Resolver) CommonOption {
	return commonOption{
		client: common.Resolver[clientConfig]("idempotency", r),
		server: common.Resolver[serverConfig]("idempotency", r),
	}
}

// WithObserver sets the observer that hears KeyAttached (client), Replay,
// KeyConflict and KeyStoreError (server) events. nil, the default,
// reports nothing.
func WithObserver(o observe.Observer) CommonOption {
	return commonOption{client: common.Observer[clientConfig](o), server: common.Observer[serverConfig](o)}
}

// WithRawKeysInEvents makes KeyAttached and Replay events carry the key
// itself in Reason instead of its KeyHash. Keys identify operations, and telemetry is often kept
// longer and read more widely than the operations it describes, so this is
// off by default.
func WithRawKeysInEvents() CommonOption {
	return commonOption{
		client: func(c *clientConfig) error { c.rawKeys = true; return nil },
		server: func(c *serverConfig) error { c.rawKeys = true; return nil },
	}
}

// WithClock sets the clock that times lease renewals, waits for claims in
// flight in stores that are polled, and the default in-memory store (the
// system clock when not given). A store given with WithStore keeps its own
// time.
func WithClock(c clock.Clock) ServerOption {
	return serverOption(common.Clock[serverConfig]("idempotency", c))
}

// WithStore sets where outcomes are kept. The default is a MemoryStore with
// default bounds, which deduplicates only within one process: services
// with several replicas use a shared store such as redisstore.
func WithStore(st Store) ServerOption {
	return serverOption(func(s *serverConfig) error {
		if st == nil {
			return errors.New("idempotency.WithStore: nil store")
		}
		s.store = st
		return nil
	})
}

// IdentityFunc returns who is calling: the principal, tenant, account or
// service on whose behalf the request is made, as the service
// authenticated it. Entries of different identities never meet: an
// outcome is replayed only to the identity that created it, and a key of
// another identity looks to a caller exactly like an unused one. Quotas
// (MemoryConfig.MaxEntriesPerIdentity) are counted per identity too. An
// error fails the call: with its own status if it has one, otherwise with
// UNAUTHENTICATED.
//
// The identity must outlive the connection: a client that crashed,
// restarted with a new address and repeats its call must have the same
// identity, or the call runs again.
type IdentityFunc func(ctx context.Context) (string, error)

// WithIdentity sets how the server names the caller. The default,
// CertificateIdentity, uses the verified mTLS client certificate and
// refuses callers without one. Services that authenticate callers by other
// means (a token checked by an auth interceptor that puts the principal in
// the context) pass a function that returns that principal; services that
// do not authenticate callers choose Unauthenticated, or PeerIdentity and
// its caveats.
func WithIdentity(f IdentityFunc) ServerOption {
	return serverOption(func(s *serverConfig) error {
		if f == nil {
			return errors.New("idempotency.WithIdentity: nil function")
		}
		s.identity = f
		return nil
	})
}

// WithTTL sets how long an outcome is kept and replayed (DefaultTTL). A
// client must not retry a key for longer than this.
func WithTTL(d time.Duration) ServerOption {
	return serverOption(func(s *serverConfig) error {
		if d <= 0 {
			return fmt.Errorf("idempotency.WithTTL(%v): must be positive", d)
		}
		s.ttl = d
		return nil
	})
}

// WithLease sets how long a claim protects a handler without being
// renewed (DefaultLease); the server renews it while the handler runs.
// When a process dies while running a handler, retries of its key wait
// until the lease ends, and the key can then be claimed again.
func WithLease(d time.Duration) ServerOption {
	return serverOption(func(s *serverConfig) error {
		if d <= 0 {
			return fmt.Errorf("idempotency.WithLease(%v): must be positive", d)
		}
		s.lease = d
		return nil
	})
}

// WithMaxWaiters bounds the requests that wait for a claim in flight with
// their key (DefaultMaxWaiters); more are answered ABORTED at once, for
// the client to retry after a backoff. 0 answers every such request
// ABORTED.
func WithMaxWaiters(n int) ServerOption {
	return serverOption(func(s *serverConfig) error {
		if n < 0 {
			return fmt.Errorf("idempotency.WithMaxWaiters(%d): must not be negative", n)
		}
		s.maxWaiters = n
		return nil
	})
}

// WithStoreTimeout bounds the store writes made after the handler returns
// (DefaultStoreTimeout).
func WithStoreTimeout(d time.Duration) ServerOption {
	return serverOption(func(s *serverConfig) error {
		if d <= 0 {
			return fmt.Errorf("idempotency.WithStoreTimeout(%v): must be positive", d)
		}
		s.storeTimeout = d
		return nil
	})
}

// WithFailOpen makes the server run a request without deduplication when
// the store cannot be reached, instead of failing it with UNAVAILABLE.
// Only for methods where a rare duplicate is better than an outage; a full
// store still answers RESOURCE_EXHAUSTED.
func WithFailOpen() ServerOption {
	return serverOption(func(s *serverConfig) error { s.failOpen = true; return nil })
}

// WithStoredCodes replaces DefaultStoredCodes: the codes whose outcome is
// stored and replayed. Other outcomes release the key so that the request
// can be retried with it, unless the handler called Commit. The set must
// hold OK.
func WithStoredCodes(set policy.CodeSet) ServerOption {
	return serverOption(func(s *serverConfig) error {
		if !set.Has(codes.OK) {
			return fmt.Errorf("idempotency.WithStoredCodes(%v): must hold OK", set)
		}
		s.stored = set
		return nil
	})
}

// WithTypes sets the registry in which response types are found on replay
// (protoregistry.GlobalTypes when not given).
func WithTypes(t *protoregistry.Types) ServerOption {
	return serverOption(func(s *serverConfig) error {
		if t == nil {
			return errors.New("idempotency.WithTypes: nil registry")
		}
		s.types = t
		return nil
	})
}
