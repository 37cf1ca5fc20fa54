package pending_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/failsoft/failsoft"
	"github.com/failsoft/failsoft/interceptors/breaker"
	"github.com/failsoft/failsoft/interceptors/clock"
	"github.com/failsoft/failsoft/interceptors/idempotency"
	"github.com/failsoft/failsoft/interceptors/internal/testserver"
	"github.com/failsoft/failsoft/interceptors/pending"
	"github.com/failsoft/failsoft/interceptors/pending/boltstore"
	"github.com/failsoft/failsoft/interceptors/pending/redisstore"
	"github.com/failsoft/failsoft/internal/redistest"
	policytestv1 "github.com/failsoft/failsoft/proto/failsoft/policytest/v1"
)

// payService is a keyed-write service behind the idempotency server
// interceptor, with a network in front that can be down or lose responses
// after the service committed.
type payService struct {
	policytestv1.UnimplementedPlainServiceServer
	policytestv1.UnimplementedTunedServiceServer

	mu      sync.Mutex
	down    bool
	lose    map[string]bool // charges whose first response is lost
	commits map[string]int
}

func (s *payService) KeyedWrite(_ context.Context, r *policytestv1.PingRequest) (*policytestv1.PingResponse, error) {
	if strings.HasSuffix(r.Payload, ":decline") {
		return nil, status.Error(codes.InvalidArgument, "card declined")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.commits[r.Payload]++
	return &policytestv1.PingResponse{Payload: "receipt " + r.Payload}, nil
}

func (s *payService) network(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	s.mu.Lock()
	down := s.down
	s.mu.Unlock()
	if down {
		return nil, status.Error(codes.Unavailable, "network down")
	}
	resp, err := handler(ctx, req)
	s.mu.Lock()
	defer s.mu.Unlock()
	if p := req.(*policytestv1.PingRequest).Payload; s.lose[p] {
		delete(s.lose, p)
		return nil, status.Error(codes.Unavailable, "response lost after commit")
	}
	return resp, err
}

// replica is one client process: a connection through the queue and the
// failsoft suite, over its store.
type replica struct {
	conn  *grpc.ClientConn
	q     *pending.Queue
	store pending.Store
	close func()
}

func startReplica(t *testing.T, addr string, store pending.Store, clk clock.Clock, opts ...pending.Option) *replica {
	t.Helper()
	q, err := pending.New(store, append([]pending.Option{pending.ForMethods(keyedWrite), pending.WithClock(clk),
		pending.WithRand(func() float64 { return 0.5 }), pending.WithDrain(time.Second, 16, time.Minute)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	suite, err := failsoft.DialOptions(failsoft.WithClock(clk), failsoft.WithoutRetry(), failsoft.WithoutThrottle(),
		failsoft.WithBreaker(breaker.FailuresWithin(3, time.Minute), breaker.OpenFor(10*time.Second, 20*time.Second)))
	if err != nil {
		t.Fatal(err)
	}
	conn := testserver.Dial(t, addr, append([]grpc.DialOption{grpc.WithChainUnaryInterceptor(q.UnaryClientInterceptor())}, suite...)...)
	r := &replica{conn: conn, q: q, store: store}
	r.close = func() { _ = q.Close(); _ = conn.Close() }
	t.Cleanup(r.close)
	return r
}

// killedStore is the store of a process that dies after settling allow
// entries: every later Settle fails, so the entry the drainer just
// delivered stays claimed, as when the process is killed between the
// server's commit and the store's acknowledgement.
type killedStore struct {
	pending.Store
	mu    sync.Mutex
	allow int
}

var errKilled = errors.New("process killed")

func (s *killedStore) Settle(ctx context.Context, key string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.allow == 0 {
		return errKilled
	}
	s.allow--
	return s.Store.Settle(ctx, key)
}

// A store backend for the exactly-once test: open returns replica r's
// store in the process's life-th life, and a function that closes it.
type backend struct {
	name     string
	replicas int
	open     func(t *testing.T, r, life int) (pending.Store, func())
}

func boltBackend(t *testing.T) backend {
	path := filepath.Join(t.TempDir(), "pending.db")
	return backend{name: "bbolt", replicas: 1, open: func(t *testing.T, _, _ int) (pending.Store, func()) {
		s, err := boltstore.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		return s, func() { _ = s.Close() }
	}}
}

func redisBackend(t *testing.T) backend {
	srv := redistest.Start(t)
	rc := redis.NewClient(&redis.Options{Addr: srv.Addr, MaxRetries: -1, DialTimeout: time.Second})
	t.Cleanup(func() { _ = rc.Close() })
	return backend{name: "redis", replicas: 2, open: func(t *testing.T, r, life int) (pending.Store, func()) {
		s, err := redisstore.New(rc, redisstore.WithQueue("checkout"), redisstore.WithConsumer(fmt.Sprintf("replica-%d-life-%d", r, life)))
		if err != nil {
			t.Fatal(err)
		}
		return s, func() {}
	}}
}

// TestExactlyOnce: 1,000 charges through the failsoft suite on each
// client replica while the network fails (the breakers open) and some
// responses are lost after commit; the client processes are killed twice
// with charges pending, the second time between a redelivery's commit and
// its acknowledgement; then the drainers settle every charge exactly once
// and dead-letter only the declined ones, with the server's reason.
func TestExactlyOnce(t *testing.T) {
	for name, mk := range map[string]func(*testing.T) backend{"bbolt": boltBackend, "redis": redisBackend} {
		t.Run(name, func(t *testing.T) { exactlyOnce(t, mk(t)) })
	}
}

func exactlyOnce(t *testing.T, b backend) {
	const n = 1000
	ctx := context.Background()
	svc := &payService{lose: map[string]bool{}, commits: map[string]int{}}
	addr := testserver.Serve(t, testserver.Policytest(svc), grpc.ChainUnaryInterceptor(svc.network, mustIdempotencyServer(t)))
	clk := clock.NewFake(time.Now())
	charge := func(i int) string {
		if i%25 == 11 {
			return fmt.Sprintf("charge-%04d:decline", i)
		}
		return fmt.Sprintf("charge-%04d", i)
	}
	for i := range n {
		if i%7 == 3 {
			svc.lose[charge(i)] = true
		}
	}
	var (
		mu      sync.Mutex
		settled = map[string]int{} // idempotency key -> OnSettled calls
		dead    = map[string]string{}
	)
	hooks := []pending.Option{
		pending.OnSettled(func(_ context.Context, s pending.Settled) { mu.Lock(); settled[s.Key]++; mu.Unlock() }),
		pending.OnDead(func(_ context.Context, d pending.Dead) { mu.Lock(); dead[d.Key] = d.Reason; mu.Unlock() }),
	}
	life := func(life int, wrap func(pending.Store) pending.Store) ([]*replica, func()) {
		var rs []*replica
		var closers []func()
		for r := range b.replicas {
			store, closeStore := b.open(t, r, life)
			if wrap != nil {
				store = wrap(store)
			}
			rep := startReplica(t, addr, store, clk, hooks...)
			rs = append(rs, rep)
			closers = append(closers, func() { rep.close(); closeStore() })
		}
		return rs, func() {
			for _, c := range closers {
				c()
			}
		}
	}
	depth := func(s pending.Store) int {
		st, err := s.Stats(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return st.Depth
	}

	// Life 1: the charges. The network is down for the middle 400.
	rs, kill := life(1, nil)
	answered := map[string]string{} // charge -> ok, pending, declined
	keys := map[string]string{}     // charge -> key
	for i := range n {
		svc.mu.Lock()
		svc.down = i >= 300 && i < 700
		svc.mu.Unlock()
		key := idempotency.NewKey()
		keys[charge(i)] = key
		api := policytestv1.NewTunedServiceClient(rs[i%len(rs)].conn)
		_, err := api.KeyedWrite(idempotency.WithKey(ctx, key), &policytestv1.PingRequest{Payload: charge(i)})
		var d *pending.Deferred
		switch {
		case err == nil:
			answered[charge(i)] = "ok"
		case errors.As(err, &d):
			answered[charge(i)] = "pending"
		case status.Code(err) == codes.InvalidArgument:
			answered[charge(i)] = "declined"
		default:
			t.Fatalf("%s: %v", charge(i), err)
		}
		clk.Advance(10 * time.Millisecond)
	}
	queued := depth(rs[0].store)
	kill() // killed with charges pending
	if queued < 400 {
		t.Fatalf("%d charges pending after an outage of 400", queued)
	}

	// Life 2: the network is back; every replica dies after settling 50,
	// with the 51st delivered but not acknowledged.
	clk.Advance(time.Minute)
	rs, kill = life(2, func(s pending.Store) pending.Store { return &killedStore{Store: s, allow: 50} })
	for _, r := range rs {
		for {
			if _, err := r.q.DrainOnce(ctx, r.conn); errors.Is(err, errKilled) {
				break
			} else if err != nil {
				t.Fatal(err)
			}
		}
	}
	kill()

	// Life 3: after the dead processes' leases, the replicas drain
	// together until nothing is pending.
	rs, kill = life(3, nil)
	defer kill()
	for pass := 0; depth(rs[0].store) > 0; pass++ {
		if pass == 100 {
			t.Fatalf("%d charges still pending after %d passes", depth(rs[0].store), pass)
		}
		clk.Advance(time.Minute)
		var wg sync.WaitGroup
		for _, r := range rs {
			wg.Go(func() {
				if _, err := r.q.DrainOnce(ctx, r.conn); err != nil {
					t.Error(err)
				}
			})
		}
		wg.Wait()
	}

	var lost, dup, unexplained int
	pendingOK, pendingDeclined := 0, 0
	for i := range n {
		ch := charge(i)
		want := 1
		if strings.HasSuffix(ch, ":decline") {
			want = 0
		}
		switch got := svc.commits[ch]; {
		case got < want:
			lost++
			t.Errorf("%s (answered %s) lost", ch, answered[ch])
		case got > want:
			dup++
			t.Errorf("%s (answered %s) committed %d times", ch, answered[ch], got)
		}
		if answered[ch] != "pending" {
			continue
		}
		k := keys[ch]
		if want == 1 {
			pendingOK++
			if settled[k] != 1 {
				t.Errorf("%s settled; OnSettled heard it %d times, want once", ch, settled[k])
			}
		} else {
			pendingDeclined++
			if !strings.Contains(dead[k], "refused with InvalidArgument: card declined") {
				unexplained++
				t.Errorf("%s dead-lettered as %q", ch, dead[k])
			}
		}
	}
	if len(dead) != pendingDeclined {
		t.Errorf("%d dead letters, want the %d declined charges that were pending", len(dead), pendingDeclined)
	}
	t.Logf("%s, %d replicas: %d charges, %d pending after life 1 (%d declined when resent); lost %d, duplicates %d, unexplained dead letters %d",
		b.name, b.replicas, n, queued, pendingDeclined, lost, dup, unexplained)
}

func mustIdempotencyServer(t *testing.T) grpc.UnaryServerInterceptor {
	t.Helper()
	srv, err := idempotency.NewServer(idempotency.WithIdentity(idempotency.Unauthenticated))
	if err != nil {
		t.Fatal(err)
	}
	return srv.UnaryServerInterceptor()
}
