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

// client is one client process: a connection through the queue and the
// failsoft suite, over a bbolt store.
type client struct {
	conn  *grpc.ClientConn
	q     *pending.Queue
	store *boltstore.Store
}

func startClient(t *testing.T, addr, path string, clk clock.Clock, opts ...pending.Option) *client {
	t.Helper()
	store, err := boltstore.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	q, err := pending.New(store, append([]pending.Option{pending.ForMethods(keyedWrite), pending.WithClock(clk),
		pending.WithRand(func() float64 { return 0.5 })}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	suite, err := failsoft.DialOptions(failsoft.WithClock(clk), failsoft.WithoutRetry(), failsoft.WithoutThrottle(),
		failsoft.WithBreaker(breaker.FailuresWithin(3, time.Minute), breaker.OpenFor(10*time.Second, 20*time.Second)))
	if err != nil {
		t.Fatal(err)
	}
	conn := testserver.Dial(t, addr, append([]grpc.DialOption{grpc.WithChainUnaryInterceptor(q.UnaryClientInterceptor())}, suite...)...)
	c := &client{conn: conn, q: q, store: store}
	t.Cleanup(c.stop)
	return c
}

// stop ends the process: the store and connection close, entries stay.
func (c *client) stop() {
	_ = c.q.Close()
	_ = c.conn.Close()
	_ = c.store.Close()
}

// TestPendingThroughTheChain: charges through the failsoft suite while the
// network fails and the breaker opens, responses lost after commit, the
// client restarted with entries pending; then the drainer settles every
// charge exactly once and dead-letters only the declined ones.
func TestPendingThroughTheChain(t *testing.T) {
	const n = 200
	svc := &payService{lose: map[string]bool{}, commits: map[string]int{}}
	addr := testserver.Serve(t, testserver.Policytest(svc), grpc.ChainUnaryInterceptor(svc.network, mustIdempotencyServer(t)))
	path := filepath.Join(t.TempDir(), "pending.db")
	clk := clock.NewFake(time.Now())
	c := startClient(t, addr, path, clk)
	api := policytestv1.NewTunedServiceClient(c.conn)

	charge := func(i int) string {
		if i%25 == 11 {
			return fmt.Sprintf("charge-%03d:decline", i)
		}
		return fmt.Sprintf("charge-%03d", i)
	}
	for i := range n {
		if i%7 == 3 {
			svc.lose[charge(i)] = true
		}
	}
	answered := map[string]string{} // charge -> ok, pending, declined
	for i := range n {
		svc.mu.Lock()
		svc.down = i >= 80 && i < 160
		svc.mu.Unlock()
		_, err := api.KeyedWrite(context.Background(), &policytestv1.PingRequest{Payload: charge(i)})
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
	st, _ := c.store.Stats(context.Background())
	if st.Depth < 80 {
		t.Fatalf("%d entries pending after an outage of 80 charges", st.Depth)
	}

	// The process restarts with entries pending, and drains.
	c.stop()
	var settled, dead []string
	c = startClient(t, addr, path, clk,
		pending.OnSettled(func(_ context.Context, s pending.Settled) { settled = append(settled, s.Key) }),
		pending.OnDead(func(_ context.Context, d pending.Dead) { dead = append(dead, d.Reason) }))
	for pass := 0; pass < 50; pass++ {
		if st, _ := c.store.Stats(context.Background()); st.Depth == 0 {
			break
		}
		clk.Advance(30 * time.Second)
		if _, err := c.q.DrainOnce(context.Background(), c.conn); err != nil {
			t.Fatal(err)
		}
	}
	st, _ = c.store.Stats(context.Background())
	if st.Depth != 0 {
		t.Fatalf("%d entries still pending after the drain", st.Depth)
	}
	pendingCharges, declinedPending := 0, 0
	for i := range n {
		ch := charge(i)
		want := 1
		if strings.HasSuffix(ch, ":decline") {
			want = 0
		}
		if got := svc.commits[ch]; got != want {
			t.Errorf("%s (answered %s) committed %d times, want %d", ch, answered[ch], got, want)
		}
		if answered[ch] == "pending" {
			if want == 1 {
				pendingCharges++
			} else {
				declinedPending++
			}
		}
	}
	if len(settled) != pendingCharges || len(dead) != declinedPending || st.Dead != declinedPending {
		t.Fatalf("settled %d of %d pending charges; dead %d (store %d), want the %d declined ones", len(settled), pendingCharges, len(dead), st.Dead, declinedPending)
	}
	for _, r := range dead {
		if !strings.Contains(r, "refused with InvalidArgument: card declined") {
			t.Fatalf("dead-letter reason %q", r)
		}
	}
	t.Logf("%d charges: %d pending (%d declined when resent), all settled once", n, pendingCharges+declinedPending, declinedPending)
}

func mustIdempotencyServer(t *testing.T) grpc.UnaryServerInterceptor {
	t.Helper()
	srv, err := idempotency.NewServer()
	if err != nil {
		t.Fatal(err)
	}
	return srv.UnaryServerInterceptor()
}
