package redisstore_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"

	"github.com/failsoft/failsoft/interceptors/pending"
	"github.com/failsoft/failsoft/interceptors/pending/redisstore"
	"github.com/failsoft/failsoft/interceptors/pending/storetest"
	"github.com/failsoft/failsoft/internal/redistest"
	policytestv1 "github.com/failsoft/failsoft/proto/failsoft/policytest/v1"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func newClient(t *testing.T, addr string) *redis.Client {
	t.Helper()
	rc := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, DialTimeout: time.Second})
	t.Cleanup(func() { _ = rc.Close() })
	return rc
}

func newStore(t *testing.T, rc redis.Scripter, opts ...redisstore.Option) *redisstore.Store {
	t.Helper()
	s, err := redisstore.New(rc, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestContract(t *testing.T) {
	srv := redistest.Start(t)
	rc := newClient(t, srv.Addr)
	storetest.Run(t, func(t *testing.T, max int) pending.Store {
		return newStore(t, rc, redisstore.WithQueue(t.Name()), redisstore.WithMaxEntries(max))
	})
}

var t0 = time.Unix(1_800_000_000, 0)

// A replica that dies holding claims: another replica takes them over
// when the lease ends, and the consumer group shows the new owner.
func TestCrashedReplicasClaimsAreTakenOver(t *testing.T) {
	srv := redistest.Start(t)
	rc := newClient(t, srv.Addr)
	ctx := context.Background()
	a := newStore(t, rc, redisstore.WithConsumer("replica-a"))
	b := newStore(t, rc, redisstore.WithConsumer("replica-b"))
	for _, k := range []string{"k1", "k2", "k3"} {
		if err := a.Add(ctx, pending.Entry{Key: k, Method: "/p.S/M", Enqueued: t0, NotBefore: t0}); err != nil {
			t.Fatal(err)
		}
	}
	got, err := a.Claim(ctx, t0, time.Minute, 2)
	if err != nil || len(got) != 2 {
		t.Fatalf("replica a claimed %d, %v", len(got), err)
	}
	// a dies here. b gets only the unclaimed entry until the lease ends.
	got, err = b.Claim(ctx, t0.Add(59*time.Second), time.Minute, 10)
	if err != nil || len(got) != 1 || got[0].Key != "k3" {
		t.Fatalf("replica b during a's lease: %v, %v; want k3 only", keysOf(got), err)
	}
	got, err = b.Claim(ctx, t0.Add(time.Minute), time.Minute, 10)
	if err != nil || len(got) != 2 {
		t.Fatalf("replica b after a's lease: %v, %v; want a's two entries", keysOf(got), err)
	}
	pend, err := rc.XPendingExt(ctx, &redis.XPendingExtArgs{Stream: a.Keys()[3], Group: redisstore.Group, Start: "-", End: "+", Count: 10}).Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(pend) != 3 {
		t.Fatalf("XPENDING lists %d messages, want 3", len(pend))
	}
	for _, p := range pend {
		if p.Consumer != "replica-b" {
			t.Fatalf("message %s still owned by %s", p.ID, p.Consumer)
		}
	}
	for _, e := range got {
		if err := b.Settle(ctx, e.Key); err != nil {
			t.Fatal(err)
		}
	}
	if n, _ := rc.XLen(ctx, a.Keys()[3]).Result(); n != 1 {
		t.Fatalf("stream holds %d messages after settling two of three, want 1", n)
	}
}

func keysOf(es []pending.Entry) []string {
	out := make([]string, len(es))
	for i, e := range es {
		out[i] = e.Key
	}
	return out
}

func TestNewRejectsBadOptions(t *testing.T) {
	rc := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	defer rc.Close()
	for _, o := range []redisstore.Option{redisstore.WithQueue("a{b}"), redisstore.WithConsumer(""), redisstore.WithMaxEntries(0)} {
		if _, err := redisstore.New(rc, o); err == nil {
			t.Fatal("a bad option was accepted")
		}
	}
	if _, err := redisstore.New(nil); err == nil {
		t.Fatal("New(nil) succeeded")
	}
}

// On a Redis Cluster every script touches the keys of one queue, which
// share a hash tag and so a slot.
func TestContractCluster(t *testing.T) {
	cl := redistest.StartCluster(t, 3)
	rc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: cl.Addrs(), DialTimeout: time.Second})
	t.Cleanup(func() { _ = rc.Close() })
	storetest.Run(t, func(t *testing.T, max int) pending.Store {
		return newStore(t, rc, redisstore.WithQueue(t.Name()), redisstore.WithMaxEntries(max))
	})
}

func BenchmarkStore(b *testing.B) {
	srv := redistest.Start(b)
	rc := redis.NewClient(&redis.Options{Addr: srv.Addr, MaxRetries: -1, DialTimeout: time.Second})
	b.Cleanup(func() { _ = rc.Close() })
	n := 0
	storetest.Bench(b, policytestv1.TunedService_KeyedWrite_FullMethodName, func(b *testing.B, max int) pending.Store {
		n++
		s, err := redisstore.New(rc, redisstore.WithQueue(fmt.Sprint("bench-", n)), redisstore.WithMaxEntries(max))
		if err != nil {
			b.Fatal(err)
		}
		return s
	})
}
