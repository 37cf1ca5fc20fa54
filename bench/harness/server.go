package harness

import (
	"context"
	"hash/fnv"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/failsoft/failsoft/interceptors/policy"
	"github.com/failsoft/failsoft/interceptors/retry"
	policytestv1 "github.com/failsoft/failsoft/proto/failsoft/policytest/v1"
)

// Faults is what the loopback server does to the calls it receives. The
// zero value answers every call at once with OK.
//
// Per-attempt decisions (FailRate, LostRate, SlowRate) are a pure function
// of Seed, the request's payload (the logical call id the client sets) and
// how many attempts of that id the server has seen before, so every chain
// in a run meets exactly the same faults for the same logical call.
type Faults struct {
	// Outage answers every call with UNAVAILABLE, until SetOutage ends it.
	Outage bool
	// FailRate is the fraction of attempts answered with UNAVAILABLE
	// without doing any work (a transient failure).
	FailRate float64
	// LostRate is the fraction of charge responses (KeyedWrite and
	// PlainService's Plain) lost after the server committed the charge:
	// the client sees UNAVAILABLE. The loss happens outside the
	// deduplication layer, as on the network.
	LostRate float64
	// SlowRate is the fraction of attempts that take Slow instead of Fast;
	// every other attempt takes Fast (a backend answering late: Fast alone).
	SlowRate   float64
	Slow, Fast time.Duration
	// Capacity, when positive, is how many calls the server works on at
	// once; each takes Service, and a call that finds no free slot is
	// answered at once as Reject says.
	Capacity int
	Service  time.Duration
	Reject   Reject
	// Pushback is the wait the server asks for with RejectPushback.
	Pushback time.Duration
	// Seed selects the fault sequence.
	Seed uint64
}

// Reject is how an overloaded server answers the calls it has no room
// for.
type Reject int

const (
	// RejectExhausted answers RESOURCE_EXHAUSTED.
	RejectExhausted Reject = iota
	// RejectPushback answers UNAVAILABLE with the gRPC pushback trailer
	// (grpc-retry-pushback-ms) asking for a wait of Faults.Pushback.
	RejectPushback
	// RejectUnavailable answers plain UNAVAILABLE, as an Envoy overflow
	// 503 or a concurrency limiter's rejection reaches a gRPC client.
	RejectUnavailable
)

func (r Reject) String() string {
	switch r {
	case RejectPushback:
		return "UNAVAILABLE with pushback"
	case RejectUnavailable:
		return "plain UNAVAILABLE"
	}
	return "RESOURCE_EXHAUSTED"
}

// Server is a loopback gRPC server on 127.0.0.1 serving
// failsoft.policytest.v1.TunedService and PlainService with injected
// faults. It counts every attempt that reaches it and keeps a ledger of
// charges (KeyedWrite, and Plain: PlainService's methods have no failsoft
// options, so that a chain's library defaults apply to them).
//
// Its layers, outermost first: counting (and the attempt index of the
// logical call), response loss, deduplication by idempotency key, the
// handler with the other faults.
type Server struct {
	policytestv1.UnimplementedTunedServiceServer

	faults Faults
	srv    *grpc.Server
	lis    net.Listener
	slots  chan struct{}
	track  bool // per-id bookkeeping is needed

	attempts atomic.Int64 // every call that reached the server
	rejected atomic.Int64 // calls shed for want of capacity
	down     atomic.Bool  // answering every call UNAVAILABLE

	mu      sync.Mutex
	seen    map[string]int // attempts seen per logical call id
	charges map[string]int // ledger: charges per logical call id
}

// StartServer starts a server on a free 127.0.0.1 port. dedup are the
// server options that install the layer deduplicating KeyedWrite by
// idempotency key, inside the response loss; none uses a minimal in-memory
// one (KeyDedup).
func StartServer(f Faults, dedup ...grpc.ServerOption) (*Server, error) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &Server{
		faults:  f,
		lis:     lis,
		track:   f.FailRate > 0 || f.LostRate > 0 || f.SlowRate > 0,
		seen:    map[string]int{},
		charges: map[string]int{},
	}
	s.down.Store(f.Outage)
	if f.Capacity > 0 {
		s.slots = make(chan struct{}, f.Capacity)
	}
	if len(dedup) == 0 {
		dedup = []grpc.ServerOption{grpc.ChainUnaryInterceptor(KeyDedup())}
	}
	// Chained interceptors run in the order their options are given.
	s.srv = grpc.NewServer(append([]grpc.ServerOption{grpc.ChainUnaryInterceptor(s.count, s.lose)}, dedup...)...)
	policytestv1.RegisterTunedServiceServer(s.srv, s)
	policytestv1.RegisterPlainServiceServer(s.srv, plainService{s: s})
	go func() { _ = s.srv.Serve(lis) }()
	return s, nil
}

// Addr is the server's host:port.
func (s *Server) Addr() string { return s.lis.Addr().String() }

// Stop stops the server at once.
func (s *Server) Stop() { s.srv.Stop() }

// Attempts is the number of calls that reached the server.
func (s *Server) Attempts() int64 { return s.attempts.Load() }

// Rejected is the number of calls the server shed for want of capacity.
func (s *Server) Rejected() int64 { return s.rejected.Load() }

// SetOutage starts (true) or ends a total outage: while it lasts, every
// call is answered UNAVAILABLE.
func (s *Server) SetOutage(on bool) { s.down.Store(on) }

// Charges is how many times the logical call id was charged.
func (s *Server) Charges(id string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.charges[id]
}

// Ledger returns the number of logical calls charged and how many extra
// charges there were (a call charged three times counts two).
func (s *Server) Ledger() (charged, duplicates int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, n := range s.charges {
		charged++
		duplicates += n - 1
	}
	return charged, duplicates
}

// warmUpID is the payload of the call that opens a connection before a
// measurement; the server never injects a fault into it.
const warmUpID = "warm-up"

type attemptKey struct{}

// count counts the attempt and tags its context with the index of the
// attempt within its logical call (0 for the first).
func (s *Server) count(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	s.attempts.Add(1)
	if !s.track {
		return h(ctx, req)
	}
	id := payload(req)
	s.mu.Lock()
	n := s.seen[id]
	s.seen[id] = n + 1
	s.mu.Unlock()
	return h(context.WithValue(ctx, attemptKey{}, n), req)
}

func attemptOf(ctx context.Context) int {
	n, _ := ctx.Value(attemptKey{}).(int)
	return n
}

func payload(req any) string {
	if p, ok := req.(*policytestv1.PingRequest); ok {
		return p.GetPayload()
	}
	return ""
}

// lose drops the response of a committed charge with LostRate.
func (s *Server) lose(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	resp, err := h(ctx, req)
	if err == nil && s.faults.LostRate > 0 && isCharge(info.FullMethod) {
		if id := payload(req); id != warmUpID && s.roll(3, id, attemptOf(ctx)) < s.faults.LostRate {
			return nil, status.Error(codes.Unavailable, "bench: response lost after commit")
		}
	}
	return resp, err
}

// KeyDedup is a minimal server-side deduplication layer: a charge that
// carries an idempotency key already answered with OK gets the stored
// response without running again. It stands in for a real store where
// none is plugged in.
func KeyDedup() grpc.UnaryServerInterceptor {
	var mu sync.Mutex
	done := map[string]any{}
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		md, _ := metadata.FromIncomingContext(ctx)
		keys := md.Get(policy.KeyMetadata)
		if !isCharge(info.FullMethod) || len(keys) == 0 {
			return h(ctx, req)
		}
		mu.Lock()
		resp, ok := done[keys[0]]
		mu.Unlock()
		if ok {
			return resp, nil
		}
		resp, err := h(ctx, req)
		if err == nil {
			mu.Lock()
			done[keys[0]] = resp
			mu.Unlock()
		}
		return resp, err
	}
}

var errOutage = status.Error(codes.Unavailable, "bench: total outage")

// roll returns a uniform value in [0, 1) for (seed, salt, id, attempt).
func (s *Server) roll(salt uint64, id string, attempt int) float64 {
	h := fnv.New64a()
	_, _ = h.Write([]byte(id))
	x := h.Sum64() ^ s.faults.Seed*0x9e3779b97f4a7c15 ^ salt<<32 ^ uint64(attempt)*0xbf58476d1ce4e5b9
	// splitmix64 finaliser
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return float64(x>>11) / (1 << 53)
}

// work applies the faults every method shares.
func (s *Server) work(ctx context.Context, id string) error {
	f := &s.faults
	if id == warmUpID {
		return nil
	}
	if s.down.Load() {
		return errOutage
	}
	n := attemptOf(ctx)
	if f.FailRate > 0 && s.roll(1, id, n) < f.FailRate {
		return status.Error(codes.Unavailable, "bench: transient failure")
	}
	if s.slots != nil {
		select {
		case s.slots <- struct{}{}:
			defer func() { <-s.slots }()
		default:
			s.rejected.Add(1)
			return s.reject(ctx)
		}
		if err := sleep(ctx, f.Service); err != nil {
			return err
		}
	}
	d := f.Fast
	if f.SlowRate > 0 && s.roll(2, id, n) < f.SlowRate {
		d = f.Slow
	}
	return sleep(ctx, d)
}

// reject answers a call the server has no room for, as Faults.Reject says.
func (s *Server) reject(ctx context.Context) error {
	switch s.faults.Reject {
	case RejectPushback:
		ms := strconv.FormatInt(s.faults.Pushback.Milliseconds(), 10)
		_ = grpc.SetTrailer(ctx, metadata.Pairs(retry.PushbackMetadata, ms))
		return status.Error(codes.Unavailable, "bench: over capacity, retry later")
	case RejectUnavailable:
		return status.Error(codes.Unavailable, "bench: over capacity")
	}
	return status.Error(codes.ResourceExhausted, "bench: over capacity")
}

func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return status.FromContextError(ctx.Err()).Err()
	}
}

// Override is an idempotent read-style call.
func (s *Server) Override(ctx context.Context, req *policytestv1.PingRequest) (*policytestv1.PingResponse, error) {
	if err := s.work(ctx, req.GetPayload()); err != nil {
		return nil, err
	}
	return &policytestv1.PingResponse{Payload: req.GetPayload()}, nil
}

// Hedged is a read with no side effects.
func (s *Server) Hedged(ctx context.Context, req *policytestv1.PingRequest) (*policytestv1.PingResponse, error) {
	return s.Override(ctx, req)
}

// KeyedWrite charges the logical call named by the payload, once per time
// it runs; deduplication is the dedup layer's job.
func (s *Server) KeyedWrite(ctx context.Context, req *policytestv1.PingRequest) (*policytestv1.PingResponse, error) {
	return s.charge(ctx, req)
}

func (s *Server) charge(ctx context.Context, req *policytestv1.PingRequest) (*policytestv1.PingResponse, error) {
	id := req.GetPayload()
	if err := s.work(ctx, id); err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.charges[id]++
	s.mu.Unlock()
	return &policytestv1.PingResponse{Payload: id}, nil
}

// plainService serves PlainService, whose methods carry no failsoft
// options: Idempotent and NoSideEffects are reads like Override, Plain is
// a charge like KeyedWrite.
type plainService struct {
	policytestv1.UnimplementedPlainServiceServer
	s *Server
}

func (p plainService) Idempotent(ctx context.Context, req *policytestv1.PingRequest) (*policytestv1.PingResponse, error) {
	return p.s.Override(ctx, req)
}

func (p plainService) NoSideEffects(ctx context.Context, req *policytestv1.PingRequest) (*policytestv1.PingResponse, error) {
	return p.s.Override(ctx, req)
}

func (p plainService) Plain(ctx context.Context, req *policytestv1.PingRequest) (*policytestv1.PingResponse, error) {
	return p.s.charge(ctx, req)
}
