package pending_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"pgregory.net/rapid"

	"github.com/failsoft/failsoft/interceptors/clock"
	"github.com/failsoft/failsoft/interceptors/idempotency"
	"github.com/failsoft/failsoft/interceptors/outcome"
	"github.com/failsoft/failsoft/interceptors/pending"
	policytestv1 "github.com/failsoft/failsoft/proto/failsoft/policytest/v1"
)

// The model is the drainer's contract written plainly: which entries a
// pass claims, in which order it sends them, and what each answer does to
// an entry. The test drives the real Queue over a MemoryStore and a fake
// connection with a fake clock, and compares every pass with the model.

const (
	modelBatch   = 4
	modelMax     = 6
	modelAttempt = 3
	modelAge     = 10 * time.Minute
	modelRetry   = 20 * time.Second // RetryAfter of the fake breaker
	modelLease   = time.Minute
)

type modelEntry struct {
	key      string
	enq, nb  time.Time
	attempts int
}

type drainModel struct {
	t       *rapid.T
	clk     *clock.Fake
	store   *pending.MemoryStore
	q       *pending.Queue
	conn    *fakeConn
	mode    string // healthy, down, open
	bad     map[string]bool
	waiting map[string]*modelEntry
	settled map[string]int // hook calls
	dead    map[string]string
	commits map[string]int // charges the server made
	seq     int
	// kill makes the drainer's process die at its next settle: after the
	// server committed, before the store acknowledged. armed is the same
	// for the store, set for one pass.
	kill, armed bool
}

var errKilled = errors.New("process killed")

// killableStore fails Settle when its model is armed, once.
type killableStore struct {
	*pending.MemoryStore
	m *drainModel
}

func (s killableStore) Settle(ctx context.Context, key string) error {
	if s.m.armed {
		s.m.armed = false
		return errKilled
	}
	return s.MemoryStore.Settle(ctx, key)
}

func backoffOf(n int) time.Duration {
	d := time.Second
	for i := 1; i < n; i++ {
		d *= 2
	}
	return min(d, time.Minute)
}

func (m *drainModel) answer(key string, _ *policytestv1.PingRequest) error {
	switch {
	case m.mode == "open":
		return &outcome.Rejection{Layer: "breaker", Code: codes.Unavailable, Message: "open", RetryAfter: modelRetry}
	case m.mode == "down":
		return status.Error(codes.Unavailable, "down")
	case m.bad[key]:
		return status.Error(codes.InvalidArgument, "bad amount")
	case m.commits[key] > 0:
		return nil // the server answers a repeated key from its record
	}
	m.commits[key]++
	return nil
}

func (m *drainModel) enqueue(t *rapid.T) {
	m.seq++
	key := fmt.Sprintf("k%03d", m.seq)
	if rapid.Bool().Draw(t, "bad") {
		m.bad[key] = true
	}
	ctx := idempotency.WithKey(context.Background(), key)
	invoker := func(context.Context, string, any, any, *grpc.ClientConn, ...grpc.CallOption) error {
		return status.Error(codes.Unavailable, "down")
	}
	err := m.q.UnaryClientInterceptor()(ctx, keyedWrite, &policytestv1.PingRequest{Payload: key}, &policytestv1.PingResponse{}, nil, invoker)
	var d *pending.Deferred
	if len(m.waiting) >= modelMax {
		if !errors.Is(err, pending.ErrFull) {
			t.Fatalf("enqueue into a full store: %v, want ErrFull", err)
		}
	} else {
		if !errors.As(err, &d) || d.Key != key {
			t.Fatalf("enqueue: %v, want Deferred", err)
		}
		now := m.clk.Now()
		m.waiting[key] = &modelEntry{key: key, enq: now, nb: now}
	}
	m.clk.Advance(time.Millisecond) // distinct enqueue times order the queue
}

func (m *drainModel) drain(t *rapid.T) {
	now := m.clk.Now()
	var due []*modelEntry
	for _, e := range m.waiting {
		if !e.nb.After(now) {
			due = append(due, e)
		}
	}
	slices.SortFunc(due, func(a, b *modelEntry) int {
		if c := a.nb.Compare(b.nb); c != 0 {
			return c
		}
		return a.enq.Compare(b.enq)
	})
	due = due[:min(len(due), modelBatch)]
	for _, e := range due {
		e.nb = now.Add(modelLease) // claimed
	}
	var want pending.Report
	var wantSent []string
	m.armed = m.kill
	killed := false
	for i, e := range due {
		if now.Sub(e.enq) >= modelAge {
			delete(m.waiting, e.key)
			m.dead[e.key] = "older"
			want.Dead++
			continue
		}
		wantSent = append(wantSent, e.key)
		switch {
		case m.mode == "open":
			for _, r := range due[i:] {
				r.nb = now.Add(max(modelRetry, backoffOf(1)))
			}
			want.Retry += len(due) - i
		case m.mode == "down":
			e.attempts++
			if e.attempts >= modelAttempt {
				delete(m.waiting, e.key)
				m.dead[e.key] = "gave up"
				want.Dead++
				continue
			}
			e.nb = now.Add(backoffOf(e.attempts))
			want.Retry++
			continue
		case m.bad[e.key]:
			delete(m.waiting, e.key)
			m.dead[e.key] = "refused"
			want.Dead++
			continue
		case m.kill:
			// Committed, not acknowledged: it and the rest of the batch
			// stay claimed until the lease ends.
			m.kill, killed = false, true
		default:
			delete(m.waiting, e.key)
			want.Settled++
			continue
		}
		break
	}
	m.conn.sent = m.conn.sent[:0]
	got, err := m.q.DrainOnce(context.Background(), m.conn)
	m.armed = false
	if killed != errors.Is(err, errKilled) || (!killed && err != nil) || got != want || !slices.Equal(m.conn.sent, wantSent) {
		t.Fatalf("DrainOnce at %v (%s, killed %v) = %+v, %v, sent %v; model: %+v, sent %v", now.Sub(start), m.mode, killed, got, err, m.conn.sent, want, wantSent)
	}
}

func (m *drainModel) check(t *rapid.T) {
	st, err := m.store.Stats(context.Background())
	if err != nil || st.Depth != len(m.waiting) || st.Dead != len(m.dead) {
		t.Fatalf("store %+v, %v; model: %d waiting, %d dead", st, err, len(m.waiting), len(m.dead))
	}
	for k, n := range m.commits {
		// A committed key is settled once, or still waiting after its
		// drainer died before acknowledging it, or dead because the queue
		// gave up on it (its outcome unknown to the queue, never refused).
		_, waiting := m.waiting[k]
		reason, dead := m.dead[k]
		if n != 1 || m.settled[k] > 1 || (m.settled[k] == 1) == (waiting || dead) || reason == "refused" {
			t.Fatalf("%s committed %d times, settled %d times, waiting %v, dead %q", k, n, m.settled[k], waiting, reason)
		}
	}
}

func TestDrainerModel(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		m := &drainModel{t: t, clk: clock.NewFake(start), mode: "healthy", bad: map[string]bool{},
			waiting: map[string]*modelEntry{}, settled: map[string]int{}, dead: map[string]string{}, commits: map[string]int{}}
		store, err := pending.NewMemoryStore(modelMax)
		if err != nil {
			t.Fatal(err)
		}
		m.store = store
		m.conn = &fakeConn{answer: m.answer}
		m.q, err = pending.New(killableStore{store, m}, pending.ForMethods(keyedWrite), pending.WithClock(m.clk),
			pending.WithRand(func() float64 { return 0.5 }),
			pending.WithLimits(modelAttempt, modelAge), pending.WithBackoff(time.Second, time.Minute),
			pending.WithDrain(time.Second, modelBatch, modelLease),
			pending.OnSettled(func(_ context.Context, s pending.Settled) { m.settled[s.Key]++ }),
			pending.OnDead(func(_ context.Context, d pending.Dead) {
				if _, ok := m.dead[d.Key]; !ok || d.Reason == "" {
					t.Fatalf("OnDead(%s, %q) for an entry the model keeps alive", d.Key, d.Reason)
				}
			}))
		if err != nil {
			t.Fatal(err)
		}
		defer m.q.Close()
		t.Repeat(map[string]func(*rapid.T){
			"enqueue": m.enqueue,
			"drain":   m.drain,
			"kill":    func(*rapid.T) { m.kill = true },
			"mode": func(t *rapid.T) {
				m.mode = rapid.SampledFrom([]string{"healthy", "down", "open"}).Draw(t, "mode")
			},
			"advance": func(t *rapid.T) {
				m.clk.Advance(time.Duration(rapid.Int64Range(0, int64(3*time.Minute)).Draw(t, "d")))
			},
			"": m.check,
		})
	})
}
