package harness

import (
	"context"
	"hash/fnv"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/failsoft/failsoft/interceptors/policy"
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
	// Outage answers every call with UNAVAILABLE.
	Outage bool
	// FailRate is the fraction of attempts answered with UNAVAILABLE
	// without doing any work (a transient failure).
	FailRate float64
	// LostRate is the fraction of KeyedWrite responses lost after the
	// server committed the charge: the client sees UNAVAILABLE. The loss
	// happens outside the deduplication layer, as on the network.
	LostRate float64
	// SlowRate is the fraction of attempts that take Slow instead of Fast.
	SlowRate   float64
	Slow, Fast time.Duration
	// Capacity, when positive, is how many calls the server works on at
	// once; each takes Service, and a call that finds no free slot is
	// answered at once with RESOURCE_EXHAUSTED.
	Capacity int
	Service  time.Duration
	// Seed selects the fault sequence.
	Seed uint64
}

// Server is a loopback gRPC server on 127.0.0.1 serving
// failsoft.policytest.v1.TunedService with injected faults. It counts every
// attempt that reaches it and keeps a ledger of KeyedWrite charges.
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
	rejected atomic.Int64 // RESOURCE_EXHAUSTED answers

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
	if f.Capacity > 0 {
		s.slots = make(chan struct{}, f.Capacity)
	}
	if len(dedup) == 0 {
		dedup = []grpc.ServerOption{grpc.ChainUnaryInterceptor(KeyDedup())}
	}
	// Chained interceptors run in the order their options are given.
	s.srv = grpc.NewServer(append([]grpc.ServerOption{grpc.ChainUnaryInterceptor(s.count, s.lose)}, dedup...)...)
	policytestv1.RegisterTunedServiceServer(s.srv, s)
	go func() { _ = s.srv.Serve(lis) }()
	return s, nil
}

// Addr is the server's host:port.
func (s *Server) Addr() string { return s.lis.Addr().String() }

// Stop stops the server at once.
func (s *Server) Stop() { s.srv.Stop() }

// Attempts is the number of calls that reached the server.
func (s *Server) Attempts() int64 { return s.attempts.Load() }

// Rejected is the number of calls the server shed with RESOURCE_EXHAUSTED.
func (s *Server) Rejected() int64 { return s.rejected.Load() }

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

// lose drops the response of a committed KeyedWrite with LostRate.
func (s *Server) lose(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	resp, err := h(ctx, req)
	if err == nil && s.faults.LostRate > 0 && info.FullMethod == methodKeyedWrite {
		if id := payload(req); id != warmUpID && s.roll(3, id, attemptOf(ctx)) < s.faults.LostRate {
			return nil, status.Error(codes.Unavailable, "bench: response lost after commit")
		}
	}
	return resp, err
}

// KeyDedup is a minimal server-side deduplication layer: a KeyedWrite that
// carries an idempotency key already answered with OK gets the stored
// response without running again. It stands in for a real store where
// none is plugged in.
func KeyDedup() grpc.UnaryServerInterceptor {
	var mu sync.Mutex
	done := map[string]any{}
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		md, _ := metadata.FromIncomingContext(ctx)
		keys := md.Get(policy.KeyMetadata)
		if info.FullMethod != methodKeyedWrite || len(keys) == 0 {
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
	if f.Outage {
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
			return status.Error(codes.ResourceExhausted, "bench: over capacity")
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
	id := req.GetPayload()
	if err := s.work(ctx, id); err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.charges[id]++
	s.mu.Unlock()
	return &policytestv1.PingResponse{Payload: id}, nil
}
