package redisstore_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"

	"github.com/failsoft/failsoft/interceptors/idempotency"
	"github.com/failsoft/failsoft/interceptors/idempotency/internal/storetest"
	"github.com/failsoft/failsoft/interceptors/idempotency/redisstore"
	"github.com/failsoft/failsoft/internal/redistest"
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
	st, err := redisstore.New(rc, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// expireNow ends the Redis expiry of k's entry: PEXPIRE 1 ms, then wait for
// Redis to drop it (an access expires a due key at once).
func expireNow(t *testing.T, rc redis.Cmdable, st *redisstore.Store, k idempotency.Key) {
	t.Helper()
	ctx := context.Background()
	name := st.RedisKey(k)
	if err := rc.PExpire(ctx, name, time.Millisecond).Err(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for rc.Exists(ctx, name).Val() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%s did not expire", name)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestContract(t *testing.T) {
	rs := redistest.Start(t)
	rc := newClient(t, rs.Addr)
	st := newStore(t, rc)
	storetest.Run(t, st, func(t *testing.T, k idempotency.Key) { expireNow(t, rc, st, k) })
	storetest.RunBounded(t, newStore(t, rc, redisstore.WithMaxEntriesPerIdentity(3)))
	unbounded := newStore(t, rc, redisstore.WithPrefix("unbounded:"), redisstore.WithMaxEntriesPerIdentity(0))
	storetest.Run(t, unbounded, func(t *testing.T, k idempotency.Key) { expireNow(t, rc, unbounded, k) })
}

// TestContractCluster runs the contract against a Redis Cluster of three
// masters: every operation is one script on one key, so each goes to the
// node that owns its key's slot.
func TestContractCluster(t *testing.T) {
	cl := redistest.StartCluster(t, 3)
	rc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: cl.Addrs(), DialTimeout: time.Second})
	t.Cleanup(func() { _ = rc.Close() })
	st := newStore(t, rc)
	storetest.Run(t, st, func(t *testing.T, k idempotency.Key) { expireNow(t, rc, st, k) })

	storetest.RunBounded(t, newStore(t, rc, redisstore.WithMaxEntriesPerIdentity(3)))
	unbounded := newStore(t, rc, redisstore.WithPrefix("unbounded:"), redisstore.WithMaxEntriesPerIdentity(0))
	storetest.Run(t, unbounded, func(t *testing.T, k idempotency.Key) { expireNow(t, rc, unbounded, k) })

	// The identities land on every node, so the contract held across them.
	ctx := context.Background()
	for i := range 30 {
		k := idempotency.Key{Identity: fmt.Sprintf("caller-%d", i), Method: "/s.v1.S/M", Key: "spread"}
		if _, err := st.Claim(ctx, k, idempotency.Fingerprint{}, time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	for _, node := range cl.Nodes {
		n, err := node.Keys()
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			t.Errorf("node %s holds no key: the cluster's slots were not used", node.Addr)
		}
	}
}

func TestExpiries(t *testing.T) {
	rs := redistest.Start(t)
	rc := newClient(t, rs.Addr)
	st := newStore(t, rc, redisstore.WithPrefix("svc:"))
	ctx := context.Background()
	k := idempotency.Key{Identity: "tenant-secret", Method: "/s.v1.S/M", Key: "order-secret"}
	if _, err := st.Claim(ctx, k, idempotency.Fingerprint{}, 1500*time.Microsecond); err != nil {
		t.Fatal(err)
	}
	name := st.RedisKey(k)
	if !strings.HasPrefix(name, "svc:") || strings.Contains(name, "secret") {
		t.Errorf("key name %q: want the prefix and no identity or key in it", name)
	}
	// Leases are rounded up to whole milliseconds: 1.5 ms becomes 2 ms
	// (the key may be gone already).
	if ttl := rc.PTTL(ctx, name).Val(); ttl > 2*time.Millisecond {
		t.Errorf("lease PTTL %v, want at most 2ms", ttl)
	}
	c, err := st.Claim(ctx, idempotency.Key{Method: "/s.v1.S/M", Key: "x"}, idempotency.Fingerprint{}, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	k2 := idempotency.Key{Method: "/s.v1.S/M", Key: "x"}
	if ttl := rc.PTTL(ctx, st.RedisKey(k2)).Val(); ttl < 59*time.Second || ttl > time.Minute {
		t.Errorf("lease PTTL %v, want about 1m", ttl)
	}
	if err := st.Complete(ctx, k2, c.Token, idempotency.Fingerprint{}, &idempotency.Outcome{}, 24*time.Hour); err != nil {
		t.Fatal(err)
	}
	if ttl := rc.PTTL(ctx, st.RedisKey(k2)).Val(); ttl < 23*time.Hour || ttl > 24*time.Hour {
		t.Errorf("outcome PTTL %v, want about 24h", ttl)
	}
}

func TestRedisDown(t *testing.T) {
	rs := redistest.Start(t)
	rc := newClient(t, rs.Addr)
	st := newStore(t, rc)
	rs.Stop()
	ctx := context.Background()
	k := idempotency.Key{Method: "/s.v1.S/M", Key: "x"}
	if _, err := st.Claim(ctx, k, idempotency.Fingerprint{}, time.Minute); err == nil || errors.Is(err, idempotency.ErrFull) {
		t.Errorf("Claim with Redis down: %v, want a connection error", err)
	}
	if err := st.Complete(ctx, k, "t", idempotency.Fingerprint{}, &idempotency.Outcome{}, time.Minute); err == nil || errors.Is(err, idempotency.ErrLeaseLost) {
		t.Errorf("Complete with Redis down: %v, want a connection error", err)
	}
	if err := st.Release(ctx, k, "t"); err == nil {
		t.Error("Release with Redis down succeeded")
	}
}

func TestCorruptValue(t *testing.T) {
	rs := redistest.Start(t)
	rc := newClient(t, rs.Addr)
	st := newStore(t, rc)
	ctx := context.Background()
	for _, v := range []string{"", "p", "x" + strings.Repeat("\x00", 40), "d" + strings.Repeat("\x00", 32) + "\x00\x05ab"} {
		k := idempotency.Key{Method: "/s.v1.S/M", Key: "corrupt"}
		if err := rc.Set(ctx, st.RedisKey(k), v, time.Minute).Err(); err != nil {
			t.Fatal(err)
		}
		if _, err := st.Claim(ctx, k, idempotency.Fingerprint{}, time.Minute); err == nil {
			t.Errorf("Claim over %q succeeded", v)
		}
	}
}

func TestOptions(t *testing.T) {
	if _, err := redisstore.New(nil); err == nil {
		t.Error("New(nil) succeeded")
	}
	rc := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	defer rc.Close()
	if _, err := redisstore.New(rc, redisstore.WithPrefix("")); err == nil || !strings.Contains(err.Error(), "WithPrefix") {
		t.Errorf("WithPrefix(\"\"): %v", err)
	}
	if _, err := redisstore.New(rc, redisstore.WithMaxEntriesPerIdentity(-1)); err == nil || !strings.Contains(err.Error(), "WithMaxEntriesPerIdentity") {
		t.Errorf("WithMaxEntriesPerIdentity(-1): %v", err)
	}
}

// commandCalls returns the calls of each command the Redis server ran
// since its statistics were last reset, scripts' commands included.
func commandCalls(t *testing.T, rc *redis.Client) map[string]int {
	t.Helper()
	info, err := rc.Info(context.Background(), "commandstats").Result()
	if err != nil {
		t.Fatal(err)
	}
	calls := map[string]int{}
	for _, line := range strings.Split(info, "\n") {
		name, stats, ok := strings.Cut(strings.TrimSpace(line), ":")
		name, isCmd := strings.CutPrefix(name, "cmdstat_")
		if !ok || !isCmd {
			continue
		}
		for _, f := range strings.Split(stats, ",") {
			if v, ok := strings.CutPrefix(f, "calls="); ok {
				n, err := strconv.Atoi(v)
				if err != nil {
					t.Fatalf("commandstats line %q: %v", line, err)
				}
				calls[name] = n
			}
		}
	}
	return calls
}

// The per-identity indexes exist for the bound: without one (0) a store
// keeps none and runs none of their commands, and loses no outcome; with
// one, the indexes are kept and the bound holds.
func TestIndexesOnlyWithABound(t *testing.T) {
	rs := redistest.Start(t)
	rc := newClient(t, rs.Addr)
	ctx := context.Background()
	indexCommands := []string{"time", "zadd", "zrem", "zremrangebyscore", "zcard", "zrange"}
	for _, tc := range []struct {
		bound       int
		wantIndexes bool
		wantStored  int // of the 5 completed keys
	}{
		{0, false, 5},
		{3, true, 2}, // 3 evicted to make room for the 2 later claims
	} {
		t.Run(fmt.Sprint("bound ", tc.bound), func(t *testing.T) {
			prefix := fmt.Sprintf("bound%d:", tc.bound)
			st := newStore(t, rc, redisstore.WithPrefix(prefix), redisstore.WithMaxEntriesPerIdentity(tc.bound))
			fp := idempotency.Fingerprint{7}
			key := func(i int) idempotency.Key {
				return idempotency.Key{Identity: "caller", Method: "/s.v1.S/M", Key: fmt.Sprint("k", i)}
			}
			claim := func(i int) idempotency.Claim {
				t.Helper()
				c, err := st.Claim(ctx, key(i), fp, time.Minute)
				if err != nil {
					t.Fatalf("claim %d: %v", i, err)
				}
				return c
			}
			if err := rc.ConfigResetStat(ctx).Err(); err != nil {
				t.Fatal(err)
			}
			const ops = 5*3 + 2 + 1 // claim, extend, complete of 5 keys; claim and release; claim
			for i := range 5 {
				c := claim(i)
				if err := st.Extend(ctx, key(i), c.Token, time.Minute); err != nil {
					t.Fatal(err)
				}
				if err := st.Complete(ctx, key(i), c.Token, fp, &idempotency.Outcome{ResponseType: "x"}, time.Hour); err != nil {
					t.Fatal(err)
				}
			}
			if err := st.Release(ctx, key(5), claim(5).Token); err != nil {
				t.Fatal(err)
			}
			claim(6) // left in flight
			calls := commandCalls(t, rc)
			total := 0
			for _, name := range append([]string{"get", "set", "pexpire", "del"}, indexCommands...) {
				total += calls[name]
			}
			t.Logf("bound %d: %d Redis commands in %d store calls (%.1f per call)", tc.bound, total, ops, float64(total)/ops)
			for _, name := range indexCommands {
				if n := calls[name]; (n > 0) != tc.wantIndexes {
					t.Errorf("%s ran %d times, want index upkeep %v", name, n, tc.wantIndexes)
				}
			}
			for _, index := range []string{"pending", "done"} {
				names, err := rc.Keys(ctx, prefix+"*}"+index).Result()
				if err != nil {
					t.Fatal(err)
				}
				if (len(names) > 0) != tc.wantIndexes {
					t.Errorf("index keys %q, want index upkeep %v", names, tc.wantIndexes)
				}
			}
			stored := 0
			for i := range 5 {
				stored += int(rc.Exists(ctx, st.RedisKey(key(i))).Val())
			}
			if stored != tc.wantStored {
				t.Errorf("%d of 5 outcomes stored, want %d", stored, tc.wantStored)
			}
		})
	}
}

// Claim and complete of a new key over loopback, with the default
// per-identity bound and without one.
func BenchmarkClaimComplete(b *testing.B) {
	rs := redistest.Start(b)
	rc := redis.NewClient(&redis.Options{Addr: rs.Addr, MaxRetries: -1, DialTimeout: time.Second})
	defer rc.Close()
	ctx := context.Background()
	i := 0 // new keys across every run of the benchmark
	for _, bound := range []int{redisstore.DefaultMaxEntriesPerIdentity, 0} {
		b.Run(fmt.Sprint("bound=", bound), func(b *testing.B) {
			st, err := redisstore.New(rc, redisstore.WithPrefix(fmt.Sprintf("bench%d:", bound)), redisstore.WithMaxEntriesPerIdentity(bound))
			if err != nil {
				b.Fatal(err)
			}
			o := &idempotency.Outcome{ResponseType: "t", Response: []byte("receipt")}
			b.ReportAllocs()
			for b.Loop() {
				k := idempotency.Key{Identity: "caller", Method: "/s.v1.S/M", Key: strconv.Itoa(i)}
				i++
				c, err := st.Claim(ctx, k, idempotency.Fingerprint{}, time.Minute)
				if err != nil {
					b.Fatal(err)
				}
				if err := st.Complete(ctx, k, c.Token, idempotency.Fingerprint{}, o, time.Hour); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
