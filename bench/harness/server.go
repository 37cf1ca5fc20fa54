package harness

import (
	"context"
	"fmt"
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
	// LostRate is the fraction of KeyedWrite attempts whose charge is
	// committed to the ledger but whose response is lost: the client sees
	// UNAVAILABLE.
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
type Server struct {
	policytestv1.UnimplementedTunedServiceServer

	faults Faults
	srv    *grpc.Server
	lis    net.Listener
	slots  chan struct{}
	track  bool // per-id bookkeeping is needed

	attempts atomic.Int64 // every call that reached a handler
	rejected atomic.Int64 // RESOURCE_EXHAUSTED answers
	accepted atomic.Int64 // calls answered OK

	mu      sync.Mutex
	seen    map[string]int    // attempts seen per logical call id
	charges map[string]int    // ledger: charges per logical call id
	keys    map[string]string // idempotency key -> charged id (dedup store)
}

// StartServer starts a server on a free 127.0.0.1 port.
func StartServer(f Faults) (*Server, error) {
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
		keys:    map[string]string{},
	}
	if f.Capacity > 0 {
		s.slots = make(chan struct{}, f.Capacity)
	}
	s.srv = grpc.NewServer(grpc.UnaryInterceptor(s.count))
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

// Accepted is the number of calls the server answered with OK.
func (s *Server) Accepted() int64 { return s.accepted.Load() }

// Ledger returns the number of logical charges and how many of them were
// charged more than once (the extra charges, summed).
func (s *Server) Ledger() (charged, duplicates int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, n := range s.charges {
		charged++
		duplicates += n - 1
	}
	return charged, duplicates
}

func (s *Server) count(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	s.attempts.Add(1)
	resp, err := h(ctx, req)
	if err == nil {
		s.accepted.Add(1)
	}
	return resp, err
}

// warmUpID is the payload of the call that opens a connection before a
// measurement; the server never injects a fault into it.
const warmUpID = "warm-up"

var errOutage = status.Error(codes.Unavailable, "bench: total outage")

// attempt returns the server-side attempt index (0 for the first) of the
// logical call id.
func (s *Server) attempt(id string) int {
	if !s.track {
		return 0
	}
	s.mu.Lock()
	n := s.seen[id]
	s.seen[id] = n + 1
	s.mu.Unlock()
	return n
}

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

// work applies the faults shared by every method and returns the attempt
// index of the call.
func (s *Server) work(ctx context.Context, id string) (int, error) {
	f := &s.faults
	if id == warmUpID {
		return 0, nil
	}
	if f.Outage {
		return 0, errOutage
	}
	n := s.attempt(id)
	if f.FailRate > 0 && s.roll(1, id, n) < f.FailRate {
		return n, status.Error(codes.Unavailable, "bench: transient failure")
	}
	if s.slots != nil {
		select {
		case s.slots <- struct{}{}:
			defer func() { <-s.slots }()
		default:
			s.rejected.Add(1)
			return n, status.Error(codes.ResourceExhausted, "bench: over capacity")
		}
		if err := sleep(ctx, f.Service); err != nil {
			return n, err
		}
	}
	d := f.Fast
	if f.SlowRate > 0 && s.roll(2, id, n) < f.SlowRate {
		d = f.Slow
	}
	if err := sleep(ctx, d); err != nil {
		return n, err
	}
	return n, nil
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
	if _, err := s.work(ctx, req.GetPayload()); err != nil {
		return nil, err
	}
	return &policytestv1.PingResponse{Payload: req.GetPayload()}, nil
}

// Hedged is a read with no side effects.
func (s *Server) Hedged(ctx context.Context, req *policytestv1.PingRequest) (*policytestv1.PingResponse, error) {
	return s.Override(ctx, req)
}

// KeyedWrite charges the logical call named by the payload. A request that
// carries an idempotency key already seen is answered from the store
// without charging again, the way a server that deduplicates by key does.
// With LostRate, a committed charge's response is lost.
func (s *Server) KeyedWrite(ctx context.Context, req *policytestv1.PingRequest) (*policytestv1.PingResponse, error) {
	id := req.GetPayload()
	n, err := s.work(ctx, id)
	if err != nil {
		return nil, err
	}
	var key string
	if md, ok := metadata.FromIncomingContext(ctx); ok {
		if v := md.Get(policy.KeyMetadata); len(v) > 0 {
			key = v[0]
		}
	}
	s.mu.Lock()
	if _, dup := s.keys[key]; !dup || key == "" {
		s.charges[id]++
		if key != "" {
			s.keys[key] = id
		}
	}
	s.mu.Unlock()
	if s.faults.LostRate > 0 && s.roll(3, id, n) < s.faults.LostRate {
		return nil, status.Error(codes.Unavailable, "bench: response lost after commit")
	}
	return &policytestv1.PingResponse{Payload: id}, nil
}

func (s *Server) String() string { return fmt.Sprintf("bench server %s", s.Addr()) }
