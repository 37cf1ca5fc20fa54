package pending_test

import (
	"context"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/failsoft/failsoft/interceptors/idempotency"
	"github.com/failsoft/failsoft/interceptors/internal/testserver"
	"github.com/failsoft/failsoft/internal/redistest"
	policytestv1 "github.com/failsoft/failsoft/proto/failsoft/policytest/v1"
)

// payService is a keyed-write service behind the idempotency server
// interceptor, with a network in front that can be down, lose responses
// after the service committed, or hold a request while the test kills
// the client process that sent it.
type payService struct {
	policytestv1.UnimplementedPlainServiceServer
	policytestv1.UnimplementedTunedServiceServer

	mu      sync.Mutex
	down    bool
	lose    map[string]bool // charges whose first response is lost
	refused int             // requests that met the network down
	hold    *hold
	commits map[string]int // the ledger: charge -> times committed
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
	p := req.(*policytestv1.PingRequest).Payload
	s.mu.Lock()
	down, h := s.down, s.hold
	if h != nil && s.commits[p] == 0 && !strings.HasSuffix(p, ":decline") {
		s.hold = nil // held: a charge this request would commit
	} else {
		h = nil
	}
	s.mu.Unlock()
	if h != nil {
		defer close(h.done)
		if !h.afterCommit {
			h.wait(p)
			return nil, status.Error(codes.Unavailable, "connection reset")
		}
	}
	if down {
		s.mu.Lock()
		s.refused++
		s.mu.Unlock()
		return nil, status.Error(codes.Unavailable, "network down")
	}
	resp, err := handler(ctx, req)
	if h != nil {
		h.wait(p) // the client is gone when this returns
		return resp, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.lose[p] {
		delete(s.lose, p)
		return nil, status.Error(codes.Unavailable, "response lost after commit")
	}
	return resp, err
}

func (s *payService) setDown(down bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.down = down
}

// A hold stops the next request that would commit a charge at the
// server, before the service saw it or after it committed, until the test
// lets it go.
type hold struct {
	afterCommit bool
	held        chan string // the held charge
	release     chan struct{}
	done        chan struct{} // the held request returned
	once        sync.Once
}

func (s *payService) holdNext(t *testing.T, afterCommit bool) *hold {
	h := &hold{afterCommit: afterCommit, held: make(chan string, 1), release: make(chan struct{}), done: make(chan struct{})}
	t.Cleanup(h.let) // a failed test must not leave the server waiting
	s.mu.Lock()
	defer s.mu.Unlock()
	s.hold = h
	return h
}

func (h *hold) wait(charge string) {
	h.held <- charge
	<-h.release
}

func (h *hold) let() { h.once.Do(func() { close(h.release) }) }

// TestExactlyOnce: 1,000 charges (200 with -short) from client processes
// through the failsoft suite, while the network is down for 40% of them
// (the breakers open, and turn most of those away) and some responses are
// lost after commit. A client process is killed with SIGKILL twice while
// charges are pending, each time while one of its redeliveries is at the
// server: once after the server committed it, once before. The restarted
// process (or, on Redis, the other replica) takes the dead one's claims
// over after their lease; in the end every charge is committed exactly
// once and every dead letter is a declined charge with the server's
// reason.
func TestExactlyOnce(t *testing.T) {
	t.Run("bbolt", func(t *testing.T) {
		x := newExactlyOnce(t)
		path := filepath.Join(t.TempDir(), "pending.db")
		life := func(n int) *client {
			return x.start("bbolt-"+strconv.Itoa(n), clientConfig{Bolt: path})
		}

		// One process at a time on the file. Life 1: the first 60% of
		// the charges, into the outage; killed in a drain pass after the
		// server committed the redelivery it was waiting for.
		c := life(1)
		x.charges(0, x.n*6/10, func(int) *client { return c })
		x.advance(time.Minute)
		committed := x.killInDrain(c, true)

		// Life 2: the rest, as the outage ends; killed in a drain pass
		// while its redelivery waits before the server, within the lease
		// of life 1's claims.
		c = life(2)
		x.charges(x.n*6/10, x.n, func(int) *client { return c })
		x.advance(drainLease / 6)
		sent := x.killInDrain(c, false)

		// Life 3 takes both lives' claims over after their leases.
		c = life(3)
		x.drainAll(c)
		x.check(c, map[string]string{committed: "bbolt-3", sent: "bbolt-3"})
	})
	t.Run("redis", func(t *testing.T) {
		srv := redistest.Start(t)
		x := newExactlyOnce(t)
		replica := func(name string) *client {
			return x.start(name, clientConfig{Redis: srv.Addr, Consumer: name})
		}

		// Two replicas on one stream take turns with the first 60% of the
		// charges; A dies in a drain pass after the server committed its
		// redelivery.
		a, b := replica("A-1"), replica("B-1")
		x.charges(0, x.n*6/10, func(i int) *client { return []*client{a, b}[i%2] })
		x.advance(time.Minute)
		committed := x.killInDrain(a, true)

		// B alone makes the next 20% and, once A's lease ended, takes
		// A's claims over.
		x.charges(x.n*6/10, x.n*8/10, func(int) *client { return b })
		x.advance(2 * drainLease)
		x.drainUntilSettled(b, committed)

		// A comes back; the two take turns with the rest. Then B dies in a
		// drain pass while its redelivery waits before the server, and A
		// takes B's claims over after the lease.
		a = replica("A-2")
		x.charges(x.n*8/10, x.n, func(i int) *client { return []*client{a, b}[i%2] })
		x.advance(time.Minute)
		sent := x.killInDrain(b, false)
		x.advance(2 * drainLease)
		x.drainUntilSettled(a, sent)

		b = replica("B-2")
		x.drainAll(a, b)
		x.check(a, map[string]string{committed: "B-1", sent: "A-2"})
	})
}

// exactlyOnce is one run of TestExactlyOnce: the server with its ledger,
// the virtual time the client processes share, and what they reported.
type exactlyOnce struct {
	t        *testing.T
	n        int
	svc      *payService
	addr     string
	now      time.Time
	keys     []string          // charge i -> its idempotency key
	charge   map[string]int    // key -> i
	answered map[int]string    // i -> ok, pending, declined
	ev       *ledger           // events of every process
	live     map[*client]bool  // processes running
	killed   map[string]string // key held when a process was killed -> that process
}

func newExactlyOnce(t *testing.T) *exactlyOnce {
	n := 1000
	if testing.Short() {
		n = 200
	}
	svc := &payService{lose: map[string]bool{}, commits: map[string]int{}}
	srv, err := idempotency.NewServer(idempotency.WithIdentity(idempotency.Unauthenticated))
	if err != nil {
		t.Fatal(err)
	}
	x := &exactlyOnce{t: t, n: n, svc: svc, now: time.Now(), charge: map[string]int{}, answered: map[int]string{},
		ev: &ledger{settledBy: map[string][]string{}, dead: map[string]string{}}, live: map[*client]bool{}, killed: map[string]string{}}
	x.addr = testserver.Serve(t, testserver.Policytest(svc), grpc.ChainUnaryInterceptor(svc.network, srv.UnaryServerInterceptor()))
	for i := range n {
		if i%7 == 3 {
			svc.lose[charge(i)] = true
		}
		key := idempotency.NewKey()
		x.keys = append(x.keys, key)
		x.charge[key] = i
	}
	return x
}

func (x *exactlyOnce) start(name string, cfg clientConfig) *client {
	cfg.Server, cfg.Start = x.addr, x.now.UnixNano()
	c := startClient(x.t, name, cfg, x.ev)
	x.live[c] = true
	return c
}

func (x *exactlyOnce) advance(d time.Duration) { x.now = x.now.Add(d) }

// charges makes charges [from, to), 100 ms apart, each through the
// process via picks; the network is down for charges [0.3n, 0.7n).
func (x *exactlyOnce) charges(from, to int, via func(int) *client) {
	x.t.Helper()
	for i := from; i < to; i++ {
		x.svc.setDown(i >= x.n*3/10 && i < x.n*7/10)
		x.advance(100 * time.Millisecond)
		c := via(i)
		c.do(x.now, "charge %d %s", i, x.keys[i])
		f := c.next()
		if len(f) != 3 || f[0] != "answered" || f[1] != strconv.Itoa(i) {
			x.t.Fatalf("%s: %q, want the answer to charge %d", c.name, f, i)
		}
		x.answered[i] = f[2]
	}
	x.svc.setDown(false)
}

// killInDrain starts a drain pass in c, holds the first of its
// redeliveries that would commit a charge at the server (after the
// commit, or before the service sees it), kills c with
// SIGKILL while it waits for the answer, then lets the request go. It
// returns the held charge's key.
func (x *exactlyOnce) killInDrain(c *client, afterCommit bool) string {
	x.t.Helper()
	h := x.svc.holdNext(x.t, afterCommit)
	c.do(x.now, "drain")
	var held string
	for held == "" {
		select {
		case held = <-h.held:
		case l, ok := <-c.lines:
			if !ok {
				x.t.Fatalf("%s ended in its drain pass; stderr: %s", c.name, c.stderrText())
			}
			if f, err := c.record(l); err != nil {
				x.t.Fatal(err)
			} else if f != nil {
				x.t.Fatalf("%s: drain pass ended (%q) and no redelivery reached the server", c.name, f)
			}
		case <-time.After(lineWait):
			x.t.Fatalf("%s: no redelivery reached the server in %v; stderr: %s", c.name, lineWait, c.stderrText())
		}
	}
	c.kill()
	delete(x.live, c)
	h.let()
	<-h.done
	key := x.keys[chargeIndex(x.t, held)]
	x.killed[key] = c.name
	x.svc.mu.Lock()
	commits := x.svc.commits[held]
	x.svc.mu.Unlock()
	if want := map[bool]int{true: 1, false: 0}[afterCommit]; commits != want {
		x.t.Fatalf("%s held: committed %d times, want %d", held, commits, want)
	}
	if p := x.pendingNow(); p == 0 {
		x.t.Fatalf("%s killed with no charge pending", c.name)
	} else {
		x.t.Logf("%s killed holding %s (%s the commit), %d charges pending", c.name, held, map[bool]string{true: "after", false: "before"}[afterCommit], p)
	}
	return key
}

func chargeIndex(t *testing.T, payload string) int {
	i, err := strconv.Atoi(strings.TrimSuffix(strings.TrimPrefix(payload, "charge-"), ":decline"))
	if err != nil {
		t.Fatalf("held %q: %v", payload, err)
	}
	return i
}

// pendingNow counts the charges answered pending that no process has
// reported settled or dead yet.
func (x *exactlyOnce) pendingNow() int {
	n := 0
	for i, a := range x.answered {
		k := x.keys[i]
		if _, dead := x.ev.dead[k]; a == "pending" && len(x.ev.settledBy[k]) == 0 && !dead {
			n++
		}
	}
	return n
}

// drain runs one drain pass in each of cs at once, a minute after the
// last, and returns the largest depth they report.
func (x *exactlyOnce) drain(cs ...*client) int {
	x.t.Helper()
	x.advance(time.Minute)
	for _, c := range cs {
		c.do(x.now, "drain")
	}
	depth := 0
	for _, c := range cs {
		f := c.next()
		if len(f) != 5 || f[0] != "drained" {
			x.t.Fatalf("%s: %q, want the drain report", c.name, f)
		}
		d, _ := strconv.Atoi(f[4])
		depth = max(depth, d)
	}
	return depth
}

// maxPasses bounds the drain passes of a phase; the verdict does not
// depend on how many it takes.
const maxPasses = 100

// drainUntilSettled drains in c until the charge with key settles.
func (x *exactlyOnce) drainUntilSettled(c *client, key string) {
	x.t.Helper()
	for pass := 0; len(x.ev.settledBy[key]) == 0; pass++ {
		if pass == maxPasses {
			x.t.Fatalf("charge %d not settled after %d passes of %s", x.charge[key], pass, c.name)
		}
		x.drain(c)
	}
}

// drainAll drains in cs until nothing is pending.
func (x *exactlyOnce) drainAll(cs ...*client) {
	x.t.Helper()
	for pass := 0; x.drain(cs...) > 0; pass++ {
		if pass == maxPasses {
			x.t.Fatalf("charges still pending after %d passes", pass)
		}
	}
}

// check reads the ledger: every charge committed exactly once (a declined
// one never), every charge answered pending settled once or dead-lettered
// with the server's refusal, every dead letter in the store explained; and
// each charge held at a kill settled by the process in takenOver.
func (x *exactlyOnce) check(c *client, takenOver map[string]string) {
	t := x.t
	t.Helper()
	c.do(x.now, "letters")
	letters := map[string]string{}
	for {
		f := c.next()
		if f[0] == "letters" {
			break
		}
		if f[0] != "letter" || len(f) < 3 {
			t.Fatalf("%s: %q, want a dead letter", c.name, f)
		}
		reason, err := strconv.Unquote(strings.Join(f[2:], " "))
		if err != nil {
			t.Fatalf("%s: %q: %v", c.name, f, err)
		}
		letters[f[1]] = reason
	}
	for c := range x.live {
		c.quit(x.now)
	}

	x.svc.mu.Lock()
	defer x.svc.mu.Unlock()
	var lost, dup, unexplained, pend int
	for i := range x.n {
		ch, k := charge(i), x.keys[i]
		want := 1
		if strings.HasSuffix(ch, ":decline") {
			want = 0
		}
		switch got := x.svc.commits[ch]; {
		case got < want:
			lost++
			t.Errorf("%s (answered %s) lost", ch, x.answered[i])
		case got > want:
			dup++
			t.Errorf("%s (answered %s) committed %d times", ch, x.answered[i], got)
		}
		settled, reason := x.ev.settledBy[k], x.ev.dead[k]
		switch {
		case x.answered[i] != "pending":
			if len(settled) > 0 || reason != "" {
				t.Errorf("%s answered %s, then settled by %v, dead %q", ch, x.answered[i], settled, reason)
			}
		case want == 1:
			pend++
			if len(settled) != 1 || reason != "" {
				t.Errorf("%s pending: OnSettled heard it in %v, OnDead %q; want settled once", ch, settled, reason)
			}
		default:
			pend++
			if len(settled) != 0 || !strings.Contains(reason, "refused with InvalidArgument: card declined") {
				t.Errorf("%s pending and declined: settled by %v, dead-lettered as %q", ch, settled, reason)
			}
		}
	}
	for k, reason := range letters {
		i, ok := x.charge[k]
		t.Logf("dead letter: %s: %s", charge(i), reason)
		if !ok || x.ev.dead[k] != reason || !strings.HasSuffix(charge(i), ":decline") {
			unexplained++
			t.Errorf("dead letter %s (charge %d, answered %s): %q, OnDead heard %q", k, i, x.answered[i], reason, x.ev.dead[k])
		}
	}
	if len(letters) != len(x.ev.dead) {
		t.Errorf("%d dead letters in the store, %d heard by OnDead", len(letters), len(x.ev.dead))
	}
	// The breakers opened in the outage: most of its charges were
	// answered pending without reaching the server.
	if outage := x.n * 4 / 10; x.svc.refused*4 > outage {
		t.Errorf("%d requests met the network down in an outage of %d charges; want the breakers to turn most away", x.svc.refused, outage)
	}
	for k, by := range takenOver {
		if got := x.ev.settledBy[k]; len(got) != 1 || got[0] != by {
			t.Errorf("%s, held when %s was killed: settled by %v, want %s", charge(x.charge[k]), x.killed[k], got, by)
		}
	}
	t.Logf("%d charges, %d answered pending, %d requests met the outage; lost %d, duplicates %d, dead letters %d (unexplained %d)",
		x.n, pend, x.svc.refused, lost, dup, len(letters), unexplained)
}
