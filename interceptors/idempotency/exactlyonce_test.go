package idempotency_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/resolver/manual"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/failsoft/failsoft/interceptors/idempotency"
	"github.com/failsoft/failsoft/interceptors/idempotency/redisstore"
	"github.com/failsoft/failsoft/interceptors/internal/testserver"
	"github.com/failsoft/failsoft/interceptors/observe"
	"github.com/failsoft/failsoft/interceptors/policy"
	"github.com/failsoft/failsoft/internal/redistest"
	policytestv1 "github.com/failsoft/failsoft/proto/failsoft/policytest/v1"
)

const (
	charges      = 1000
	faultSeed    = 20261128
	failOutright = 0.10 // the server fails the call before doing anything
	loseResponse = 0.30 // the server commits, then the response is lost
	maxAttempts  = 25   // 0.4^25 < 1e-9: every charge reaches a definite end
	workers      = 8
)

// bank is the system under test's database, shared by every replica: a
// ledger of committed charges.
type bank struct {
	mu       sync.Mutex
	ledger   map[string][]string // charge -> receipts written for it
	receipts int
	// committedBy and replayedBy name the replica, to show that replicas
	// answer for each other.
	committedBy map[string]int
	replayedBy  []replayAt
}

type replayAt struct {
	key     string
	replica int
}

func newBank() *bank {
	return &bank{ledger: map[string][]string{}, committedBy: map[string]int{}}
}

// charge is the business handler of replica r: it declines some cards
// (a final business error) and otherwise writes one ledger entry.
func (b *bank) charge(r int) func(context.Context, *policytestv1.PingRequest) (*policytestv1.PingResponse, error) {
	return func(_ context.Context, req *policytestv1.PingRequest) (*policytestv1.PingResponse, error) {
		if strings.HasSuffix(req.Payload, ":decline") {
			return nil, status.Error(codes.FailedPrecondition, "card declined")
		}
		b.mu.Lock()
		defer b.mu.Unlock()
		b.receipts++
		receipt := fmt.Sprintf("receipt-%d", b.receipts)
		b.ledger[req.Payload] = append(b.ledger[req.Payload], receipt)
		b.committedBy[req.Payload] = r
		return &policytestv1.PingResponse{Payload: receipt}, nil
	}
}

// faults sits outside the idempotency interceptor, where the network is:
// it fails calls before they reach the service, and drops responses after
// the service committed them. Whether attempt n of a charge fails depends
// only on the seed, the charge and n, so every run is the same.
type faults struct {
	mu       sync.Mutex
	attempts map[string]uint64
	keys     map[string]map[string]bool // charge -> keys seen
	lost     int
}

func newFaults() *faults {
	return &faults{attempts: map[string]uint64{}, keys: map[string]map[string]bool{}}
}

func (f *faults) interceptor() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		charge := req.(*policytestv1.PingRequest).Payload
		f.mu.Lock()
		n := f.attempts[charge]
		f.attempts[charge]++
		if f.keys[charge] == nil {
			f.keys[charge] = map[string]bool{}
		}
		for _, k := range metadata.ValueFromIncomingContext(ctx, policy.KeyMetadata) {
			f.keys[charge][k] = true
		}
		f.mu.Unlock()
		var id uint64
		for _, c := range charge {
			id = id*31 + uint64(c)
		}
		roll := rand.New(rand.NewPCG(faultSeed, id<<8|n)).Float64()
		if roll < failOutright {
			return nil, status.Error(codes.Unavailable, "fault: failed before processing")
		}
		resp, err := handler(ctx, req)
		if roll < failOutright+loseResponse {
			f.mu.Lock()
			f.lost++
			f.mu.Unlock()
			return nil, status.Error(codes.Unavailable, "fault: response lost after processing")
		}
		return resp, err
	}
}

func chargeName(i int) string {
	if i%20 == 7 {
		return fmt.Sprintf("charge-%04d:decline", i)
	}
	return fmt.Sprintf("charge-%04d", i)
}

// replica starts one server: faults, then idempotency, then the bank.
func replica(t *testing.T, r int, b *bank, f *faults, store idempotency.Store, extra ...idempotency.ServerOption) string {
	t.Helper()
	opts := []idempotency.ServerOption{idempotency.WithIdentity(tokenIdentity), idempotency.WithObserver(observe.Func(func(ctx context.Context, e observe.Event) {
		if e.Kind == observe.Replay {
			b.mu.Lock()
			b.replayedBy = append(b.replayedBy, replayAt{metadata.ValueFromIncomingContext(ctx, policy.KeyMetadata)[0], r})
			b.mu.Unlock()
		}
	}))}
	if store != nil {
		opts = append(opts, idempotency.WithStore(store))
	}
	srv, err := idempotency.NewServer(append(opts, extra...)...)
	if err != nil {
		t.Fatal(err)
	}
	return serve(t, &tuned{keyed: b.charge(r)}, grpc.ChainUnaryInterceptor(f.interceptor(), srv.UnaryServerInterceptor()))
}

type chargeResult struct {
	receipt string
	err     error
	replay  bool
}

// runCharges makes every charge once, through the idempotency and retry
// interceptors, and checks that the bank charged each exactly once.
func runCharges(t *testing.T, cc *grpc.ClientConn, b *bank, f *faults) {
	t.Helper()
	checkCharges(t, makeCharges(cc), b, f)
}

func makeCharges(cc *grpc.ClientConn) []chargeResult {
	client := policytestv1.NewTunedServiceClient(cc)
	results := make([]chargeResult, charges)
	var wg sync.WaitGroup
	next := make(chan int)
	for w := range workers {
		wg.Go(func() {
			// Each worker is a client with its own credentials.
			authed := metadata.AppendToOutgoingContext(context.Background(), "authorization", fmt.Sprint("Bearer worker-", w))
			for i := range next {
				ctx, cancel := context.WithTimeout(authed, 30*time.Second)
				var hdr metadata.MD
				resp, err := client.KeyedWrite(ctx, &policytestv1.PingRequest{Payload: chargeName(i)}, grpc.Header(&hdr))
				cancel()
				results[i] = chargeResult{err: err, replay: replayed(hdr)}
				if err == nil {
					results[i].receipt = resp.Payload
				}
			}
		})
	}
	for i := range charges {
		next <- i
	}
	close(next)
	wg.Wait()
	return results
}

func checkCharges(t *testing.T, results []chargeResult, b *bank, f *faults) {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	f.mu.Lock()
	defer f.mu.Unlock()
	var ok, declined, replays int
	for i, r := range results {
		name := chargeName(i)
		entries := b.ledger[name]
		switch {
		case r.err == nil:
			ok++
			if len(entries) != 1 || entries[0] != r.receipt {
				t.Errorf("%s succeeded with %s; ledger holds %q, want exactly that receipt", name, r.receipt, entries)
			}
		case status.Code(r.err) == codes.FailedPrecondition && strings.HasSuffix(name, ":decline"):
			declined++
			if len(entries) != 0 {
				t.Errorf("%s declined; ledger holds %q", name, entries)
			}
		default:
			t.Errorf("%s ended with %v, not a definite answer", name, r.err)
		}
		if r.replay {
			replays++
		}
		if len(f.keys[name]) != 1 {
			t.Errorf("%s was sent with %d keys, want 1", name, len(f.keys[name]))
		}
	}
	if total := len(b.ledger); total != ok {
		t.Errorf("ledger has entries for %d charges, %d succeeded", total, ok)
	}
	if b.receipts != ok {
		t.Errorf("ledger holds %d entries for %d successful charges", b.receipts, ok)
	}
	var sent uint64
	for _, n := range f.attempts {
		sent += n
	}
	t.Logf("%d charges: %d succeeded, %d declined; %d attempts, %d responses lost, %d answered from the store",
		charges, ok, declined, sent, f.lost, replays)
	if ok+declined != charges || declined != charges/20 {
		t.Errorf("%d succeeded and %d declined, want %d and %d", ok, declined, charges-charges/20, charges/20)
	}
	if f.lost < charges/5 || replays < charges/5 {
		t.Errorf("only %d lost responses and %d replays: the faults did not bite", f.lost, replays)
	}
}

func dialCharges(t *testing.T, target string, opts ...grpc.DialOption) *grpc.ClientConn {
	t.Helper()
	// Interceptors in opts go inside these two.
	return testserver.Dial(t, target, append([]grpc.DialOption{grpc.WithChainUnaryInterceptor(
		newClient(t).UnaryClientInterceptor(), // outside: one key per charge
		retryLoop(maxAttempts, nil),           // inside: every attempt reuses it
	)}, opts...)...)
}

// movingClient sends each attempt over the next of four connections to
// addr, each from another local address (127.0.0.2 to 127.0.0.5), as a
// client restarted on another pod, or behind a NAT that changed its
// mapping, would: the innermost interceptor of dialCharges's chain.
func movingClient(t *testing.T, addr string) grpc.DialOption {
	t.Helper()
	var conns []*grpc.ClientConn
	for i := range 4 {
		local := &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(2+i))}
		conns = append(conns, testserver.Dial(t, addr, grpc.WithContextDialer(func(ctx context.Context, a string) (net.Conn, error) {
			d := net.Dialer{LocalAddr: local}
			return d.DialContext(ctx, "tcp", a)
		})))
	}
	var n atomic.Uint64
	return grpc.WithChainUnaryInterceptor(func(ctx context.Context, method string, req, reply any, _ *grpc.ClientConn, _ grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		return conns[n.Add(1)%uint64(len(conns))].Invoke(ctx, method, req, reply, opts...)
	})
}

// hedgeLoop is a minimal hedging interceptor for tests: each attempt is
// two concurrent requests with the same key, each into its own reply
// message; the first definite answer wins and the other is cancelled.
// Indefinite answers (UNAVAILABLE, ABORTED) are retried, up to max
// attempts.
func hedgeLoop(max int) grpc.UnaryClientInterceptor {
	indefinite := func(err error) bool {
		c := status.Code(err)
		return c == codes.Unavailable || c == codes.Aborted || c == codes.Canceled
	}
	return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		type answer struct {
			reply  proto.Message
			header metadata.MD
			err    error
		}
		// Each request gets its own header too; the winner's is the call's.
		var header *metadata.MD
		var rest []grpc.CallOption
		for _, o := range opts {
			if h, ok := o.(grpc.HeaderCallOption); ok {
				header = h.HeaderAddr
				continue
			}
			rest = append(rest, o)
		}
		var err error
		for range max {
			hctx, cancel := context.WithCancel(ctx)
			answers := make(chan answer, 2)
			for range 2 {
				go func() {
					r := proto.Clone(reply.(proto.Message))
					proto.Reset(r)
					var hdr metadata.MD
					err := invoker(hctx, method, req, r, cc, append(rest, grpc.Header(&hdr))...)
					answers <- answer{r, hdr, err}
				}()
			}
			a := <-answers
			if indefinite(a.err) {
				a = <-answers
				cancel()
			} else {
				cancel()
				<-answers
			}
			if err = a.err; !indefinite(err) {
				if header != nil {
					*header = a.header
				}
				if err == nil {
					proto.Reset(reply.(proto.Message))
					proto.Merge(reply.(proto.Message), a.reply)
				}
				return err
			}
		}
		return err
	}
}

// Writes hedged with their key (two requests at once for every attempt)
// are charged once: the second request waits for the first's outcome.
func TestExactlyOnceHedged(t *testing.T) {
	for _, tc := range []struct {
		name  string
		store func(t *testing.T) idempotency.Store
	}{
		{"memory", func(*testing.T) idempotency.Store { return nil }},
		{"redis", func(t *testing.T) idempotency.Store { return newRedisStore(t, redistest.Start(t).Addr) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, f := newBank(), newFaults()
			addr := replica(t, 0, b, f, tc.store(t))
			cc := testserver.Dial(t, addr, grpc.WithChainUnaryInterceptor(newClient(t).UnaryClientInterceptor(), hedgeLoop(maxAttempts)))
			runCharges(t, cc, b, f)
		})
	}
}

// Clients whose attempts arrive from new addresses are still charged
// once: the identity is the caller's credentials, not its address.
func TestExactlyOnceMovingClients(t *testing.T) {
	for _, tc := range []struct {
		name  string
		store func(t *testing.T) idempotency.Store
	}{
		{"memory", func(*testing.T) idempotency.Store { return nil }},
		{"redis", func(t *testing.T) idempotency.Store { return newRedisStore(t, redistest.Start(t).Addr) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, f := newBank(), newFaults()
			addr := replica(t, 0, b, f, tc.store(t))
			runCharges(t, dialCharges(t, addr, movingClient(t, addr)), b, f)
		})
	}
}

// The same clients, named by their address (PeerIdentity), are charged
// twice: the test above would see it.
func TestExactlyOnceMovingClientsControl(t *testing.T) {
	b, f := newBank(), newFaults()
	addr := replica(t, 0, b, f, nil, idempotency.WithIdentity(idempotency.PeerIdentity))
	makeCharges(dialCharges(t, addr, movingClient(t, addr)))
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.receipts <= len(b.ledger) {
		t.Fatalf("%d ledger entries for %d charges: no duplicates with address identities?", b.receipts, len(b.ledger))
	}
	t.Logf("identities by address: %d ledger entries for %d charges", b.receipts, len(b.ledger))
}

func TestExactlyOnceMemory(t *testing.T) {
	b, f := newBank(), newFaults()
	addr := replica(t, 0, b, f, nil)
	runCharges(t, dialCharges(t, addr), b, f)
}

// Without the server interceptor, the same retries charge twice: the test
// above would see it.
func TestExactlyOnceControl(t *testing.T) {
	b, f := newBank(), newFaults()
	addr := serve(t, &tuned{keyed: b.charge(0)}, grpc.UnaryInterceptor(f.interceptor()))
	makeCharges(dialCharges(t, addr))
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.receipts <= len(b.ledger) {
		t.Fatalf("%d ledger entries for %d charges: no duplicates without deduplication?", b.receipts, len(b.ledger))
	}
	t.Logf("without deduplication: %d ledger entries for %d charges", b.receipts, len(b.ledger))
}

func newRedisStore(t *testing.T, addr string) *redisstore.Store {
	t.Helper()
	rc := redis.NewClient(&redis.Options{Addr: addr})
	t.Cleanup(func() { _ = rc.Close() })
	st, err := redisstore.New(rc)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func TestExactlyOnceRedis(t *testing.T) {
	rs := redistest.Start(t)
	b, f := newBank(), newFaults()
	addr := replica(t, 0, b, f, newRedisStore(t, rs.Addr))
	runCharges(t, dialCharges(t, addr), b, f)
}

func TestExactlyOnceTwoReplicasRedis(t *testing.T) {
	rs := redistest.Start(t)
	twoReplicas(t, func() idempotency.Store { return newRedisStore(t, rs.Addr) })
}

// The same with the replicas sharing a Redis Cluster of three masters.
func TestExactlyOnceTwoReplicasRedisCluster(t *testing.T) {
	cl := redistest.StartCluster(t, 3)
	twoReplicas(t, func() idempotency.Store {
		rc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: cl.Addrs()})
		t.Cleanup(func() { _ = rc.Close() })
		st, err := redisstore.New(rc)
		if err != nil {
			t.Fatal(err)
		}
		return st
	})
}

// twoReplicas runs the charges against two replicas, each with the store
// newStore gives it, and checks that each answered from charges the other
// committed.
func twoReplicas(t *testing.T, newStore func() idempotency.Store) {
	b, f := newBank(), newFaults()
	// Each replica has its own Redis client, as separate processes would.
	a1 := replica(t, 1, b, f, newStore())
	a2 := replica(t, 2, b, f, newStore())
	r := manual.NewBuilderWithScheme("replicas")
	r.InitialState(resolver.State{Addresses: []resolver.Address{{Addr: a1}, {Addr: a2}}})
	cc := dialCharges(t, r.Scheme()+":///charges", grpc.WithResolvers(r),
		grpc.WithDefaultServiceConfig(`{"loadBalancingConfig":[{"round_robin":{}}]}`))
	runCharges(t, cc, b, f)
	b.mu.Lock()
	defer b.mu.Unlock()
	var by [3]int
	for _, r := range b.committedBy {
		by[r]++
	}
	if by[1] == 0 || by[2] == 0 {
		t.Errorf("replica 1 committed %d charges, replica 2 %d: both should have served", by[1], by[2])
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	chargeOf := map[string]string{}
	for charge, keys := range f.keys {
		for k := range keys {
			chargeOf[k] = charge
		}
	}
	cross := 0
	for _, r := range b.replayedBy {
		if c, ok := b.committedBy[chargeOf[r.key]]; ok && c != r.replica {
			cross++
		}
	}
	t.Logf("%d of %d replays answered by the replica that did not commit the charge", cross, len(b.replayedBy))
	if cross == 0 {
		t.Error("no replica answered from a charge the other one committed")
	}
}
