package idempotency

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/known/durationpb"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	spb "google.golang.org/genproto/googleapis/rpc/status"

	"github.com/failsoft/failsoft/interceptors/clock"
	"github.com/failsoft/failsoft/interceptors/internal/option"
	"github.com/failsoft/failsoft/interceptors/observe"
	"github.com/failsoft/failsoft/interceptors/policy"
)

// Server is the server side: it runs each (caller, method, key) at most
// once and answers repeats from its Store.
type Server struct {
	cfg     serverConfig
	waiters waiters
	unsaved unsaved
}

// NewServer returns the server interceptor. With no options it keeps
// outcomes in a MemoryStore with default bounds for DefaultTTL, names
// callers with CertificateIdentity and fails closed when its store is unreachable.
func NewServer(opts ...ServerOption) (*Server, error) {
	cfg := serverConfig{
		ttl:          DefaultTTL,
		lease:        DefaultLease,
		storeTimeout: DefaultStoreTimeout,
		stored:       DefaultStoredCodes,
		identity:     CertificateIdentity,
		maxWaiters:   DefaultMaxWaiters,
		types:        protoregistry.GlobalTypes,
	}
	if err := option.Each(opts, func(o ServerOption) error { return o.applyServer(&cfg) }); err != nil {
		return nil, err
	}
	if cfg.lease > cfg.ttl {
		return nil, fmt.Errorf("failsoft: idempotency: lease %v is longer than the TTL %v", cfg.lease, cfg.ttl)
	}
	if cfg.Resolver == nil {
		cfg.Resolver = policy.Default()
	}
	cfg.Clock = clock.OrSystem(cfg.Clock)
	if cfg.store == nil {
		st, err := NewMemoryStore(MemoryConfig{Clock: cfg.Clock})
		if err != nil {
			return nil, err
		}
		cfg.store = st
	}
	srv := &Server{cfg: cfg}
	srv.waiters.max = int64(cfg.maxWaiters)
	return srv, nil
}

// Store returns the store the server uses.
func (s *Server) Store() Store { return s.cfg.store }

// UnaryServerInterceptor returns the unary server interceptor. Methods
// whose policy does not require a key pass through untouched.
func (s *Server) UnaryServerInterceptor() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		p, err := s.cfg.Resolver.Resolve(info.FullMethod)
		if err != nil {
			return nil, err // a *policy.Error: FAILED_PRECONDITION, found by errors.As
		}
		if !p.RequiresKey {
			return handler(ctx, req)
		}
		return s.serve(ctx, req, info.FullMethod, handler)
	}
}

// StreamServerInterceptor returns the stream server interceptor. Streams
// are not deduplicated: their outcome is a sequence of messages that the
// interceptor cannot store and replay faithfully. For a streaming method
// that requires a key, it checks that the stream carries exactly one valid
// key (INVALID_ARGUMENT otherwise) and leaves deduplication to the handler,
// which finds the key with IncomingKey.
func (s *Server) StreamServerInterceptor() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		p, err := s.cfg.Resolver.Resolve(info.FullMethod)
		if err != nil {
			return err
		}
		if p.RequiresKey {
			if _, err := IncomingKey(ss.Context()); err != nil {
				return status.Errorf(codes.InvalidArgument, "failsoft: idempotency: %s: %v", info.FullMethod, err)
			}
		}
		return handler(srv, ss)
	}
}

// IncomingKey returns the idempotency key of an incoming request: the one
// value of its policy.KeyMetadata entry, validated with ValidateKey.
func IncomingKey(ctx context.Context) (string, error) {
	vals := metadata.ValueFromIncomingContext(ctx, policy.KeyMetadata)
	switch len(vals) {
	case 0:
		return "", fmt.Errorf("the method requires an idempotency key in the %s request metadata, and none was sent", policy.KeyMetadata)
	case 1:
	default:
		return "", fmt.Errorf("%d %s entries in the request metadata, want one", len(vals), policy.KeyMetadata)
	}
	if err := ValidateKey(vals[0]); err != nil {
		return "", err
	}
	return vals[0], nil
}

func (s *Server) serve(ctx context.Context, req any, method string, handler grpc.UnaryHandler) (any, error) {
	key, err := IncomingKey(ctx)
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "failsoft: idempotency: %s: %v", method, err)
	}
	id, err := s.cfg.identity(ctx)
	if err != nil {
		if _, ok := status.FromError(err); ok {
			return nil, err
		}
		return nil, status.Errorf(codes.Unauthenticated, "failsoft: idempotency: caller identity: %v", err)
	}
	fp, err := FingerprintOf(method, req)
	if err != nil {
		return nil, status.Error(codes.Internal, "failsoft: "+err.Error())
	}
	k := Key{Identity: id, Method: method, Key: key}
	joined := false
	for waits := 0; ; waits++ {
		if o, ok := s.unsaved.get(k, fp, s.cfg.Clock); ok {
			// Its store write failed: the outcome is answered from here,
			// and written again.
			s.unsaved.save(ctx, s, method, k, fp, o)
			return s.replay(ctx, method, key, o)
		}
		c, err := s.cfg.store.Claim(ctx, k, fp, s.cfg.lease)
		switch {
		case errors.Is(err, ErrFull):
			return nil, s.full(ctx, method)
		case err != nil && s.cfg.failOpen:
			s.storeError(ctx, method, "claim_fail_open", err)
			return handler(ctx, req)
		case err != nil:
			s.storeError(ctx, method, "claim", err)
			return nil, status.Errorf(codes.Unavailable, "failsoft: idempotency: key store unavailable, %s not run: %v", method, err)
		}
		switch c.State {
		case Done:
			if c.Fingerprint != fp {
				return nil, s.mismatch(ctx, method)
			}
			return s.replay(ctx, method, key, c.Outcome)
		case Claimed:
			return s.run(ctx, req, method, k, c.Token, fp, handler)
		case InFlight:
			if c.Fingerprint != fp {
				return nil, s.mismatch(ctx, method)
			}
			if !joined {
				if !s.waiters.acquire() {
					return nil, s.inProgress(ctx, method)
				}
				defer s.waiters.release()
				joined = true
				s.observe(ctx, observe.Event{Kind: observe.KeyConflict, Method: method, Reason: "joined"})
			}
			// Wait for the first request's outcome, then look again: it is
			// stored (replayed), released (this request runs) or still
			// running under an extended lease (wait again).
			if err := s.wait(ctx, k, waits); err != nil {
				return nil, status.Errorf(status.FromContextError(err).Code(), "failsoft: idempotency: gave up waiting for the request in progress with this key: %v", err)
			}
		default:
			return nil, status.Errorf(codes.Internal, "failsoft: idempotency: store answered claim state %v", c.State)
		}
	}
}

// Reasons of the google.rpc.ErrorInfo detail, in ErrorDomain, that the
// server attaches to the statuses that ask the client to retry the same
// key later, so that a client's retry policy can recognise them.
const (
	ErrorDomain = "failsoft.idempotency"
	// ReasonInProgress: ABORTED, the key's first request is still running
	// and no more requests may wait for it.
	ReasonInProgress = "KEY_IN_PROGRESS"
	// ReasonStoreFull: RESOURCE_EXHAUSTED, the store has no room for a new
	// key until a claim in flight ends.
	ReasonStoreFull = "STORE_FULL"
)

// full answers a request whose store has no room: RESOURCE_EXHAUSTED, with
// the delay after which room is likely, since claims in flight end within
// a lease.
func (s *Server) full(ctx context.Context, method string) error {
	s.observe(ctx, observe.Event{Kind: observe.KeyConflict, Method: method, Reason: "full"})
	delay := min(s.cfg.lease, time.Second)
	_ = grpc.SetTrailer(ctx, metadata.Pairs(pushbackMetadata, strconv.FormatInt(delay.Milliseconds(), 10)))
	return retryLater(codes.ResourceExhausted, ReasonStoreFull, delay, "failsoft: idempotency: the key store of "+method+" has no room for a new key; retry later")
}

// inProgress answers a request that may not wait for its key's claim in
// flight: ABORTED, to be retried after a backoff.
func (s *Server) inProgress(ctx context.Context, method string) error {
	s.observe(ctx, observe.Event{Kind: observe.KeyConflict, Method: method, Reason: "in_flight"})
	return retryLater(codes.Aborted, ReasonInProgress, pollInterval, "failsoft: idempotency: a request with this idempotency key to "+method+" is still in progress; retry after a backoff")
}

func retryLater(code codes.Code, reason string, delay time.Duration, msg string) error {
	st, err := status.New(code, msg).WithDetails(
		&errdetails.ErrorInfo{Reason: reason, Domain: ErrorDomain},
		&errdetails.RetryInfo{RetryDelay: durationpb.New(delay)},
	)
	if err != nil {
		return status.Error(code, msg)
	}
	return st.Err()
}

// pushbackMetadata is the trailer by which gRPC servers tell clients when
// to retry (gRFC A6).
const pushbackMetadata = "grpc-retry-pushback-ms"

// wait returns when the claim in flight on k may have ended, or with
// ctx's error. Stores that are Waiters say when; others are polled, more
// slowly as the wait goes on: the nth wait of a request lasts
// pollInterval << n, at most maxPollInterval.
func (s *Server) wait(ctx context.Context, k Key, n int) error {
	if w, ok := s.cfg.store.(Waiter); ok {
		return w.Wait(ctx, k)
	}
	t := s.cfg.Clock.NewTimer(min(pollInterval<<min(n, 16), maxPollInterval))
	defer t.Stop()
	select {
	case <-t.C():
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// How often a request waiting for a claim in flight in a store that is not
// a Waiter looks again.
const (
	pollInterval    = 10 * time.Millisecond
	maxPollInterval = 250 * time.Millisecond
)

// waiters bounds the requests waiting for claims in flight, each holding
// a goroutine and its request.
type waiters struct {
	n   atomic.Int64
	max int64
}

func (w *waiters) acquire() bool {
	if w.n.Add(1) > w.max {
		w.n.Add(-1)
		return false
	}
	return true
}

func (w *waiters) release() { w.n.Add(-1) }

func (s *Server) mismatch(ctx context.Context, method string) error {
	s.observe(ctx, observe.Event{Kind: observe.KeyConflict, Method: method, Reason: "fingerprint"})
	return status.Errorf(codes.FailedPrecondition, "failsoft: idempotency: this idempotency key was already used for a different request to %s; use a new key for a new request", method)
}

func encodeOutcome(code codes.Code, resp any, err error) (*Outcome, error) {
	if code != codes.OK {
		b, mErr := proto.Marshal(status.Convert(err).Proto())
		if mErr != nil {
			return nil, mErr
		}
		return &Outcome{Code: code, Status: b}, nil
	}
	m, ok := resp.(proto.Message)
	if !ok {
		return nil, fmt.Errorf("response is %T, not a protobuf message", resp)
	}
	b, mErr := proto.Marshal(m)
	if mErr != nil {
		return nil, mErr
	}
	return &Outcome{Code: codes.OK, ResponseType: string(m.ProtoReflect().Descriptor().FullName()), Response: b}, nil
}

// replay answers from a stored outcome, marking the response as a replay.
func (s *Server) replay(ctx context.Context, method, key string, o *Outcome) (any, error) {
	if s.cfg.Observer != nil {
		reason := key
		if !s.cfg.rawKeys {
			reason = KeyHash(key)
		}
		s.cfg.Observer.Observe(ctx, observe.Event{Kind: observe.Replay, Method: method, Reason: reason})
	}
	header, herr := decodeMD(o.Header)
	trailer, terr := decodeMD(o.Trailer)
	if herr != nil || terr != nil {
		return nil, status.Errorf(codes.Internal, "failsoft: idempotency: stored metadata of %s is corrupt", method)
	}
	if header == nil {
		header = metadata.MD{}
	}
	header[ReplayedMetadata] = []string{"true"}
	// Without a transport stream (a handler called directly in a test)
	// there is no header to set; the replay is still correct.
	_ = grpc.SetHeader(ctx, header)
	if trailer != nil {
		_ = grpc.SetTrailer(ctx, trailer)
	}
	if o.Code != codes.OK {
		var sp spb.Status
		if err := proto.Unmarshal(o.Status, &sp); err != nil {
			return nil, status.Errorf(codes.Internal, "failsoft: idempotency: stored status of %s is corrupt: %v", method, err)
		}
		return nil, status.ErrorProto(&sp)
	}
	mt, err := s.cfg.types.FindMessageByName(protoreflect.FullName(o.ResponseType))
	if err != nil {
		return nil, status.Errorf(codes.Internal, "failsoft: idempotency: stored response type %q of %s: %v", o.ResponseType, method, err)
	}
	m := mt.New().Interface()
	if err := proto.Unmarshal(o.Response, m); err != nil {
		return nil, status.Errorf(codes.Internal, "failsoft: idempotency: stored response of %s is corrupt: %v", method, err)
	}
	return m, nil
}

// storeError reports a failure of the store, or of storing an outcome:
// what an operator needs to see before deduplication quietly stops.
func (s *Server) storeError(ctx context.Context, method, where string, err error) {
	s.observe(ctx, observe.Event{Kind: observe.KeyStoreError, Method: method, Reason: where, Err: err})
}

func (s *Server) observe(ctx context.Context, e observe.Event) {
	if s.cfg.Observer != nil {
		s.cfg.Observer.Observe(ctx, e)
	}
}
