package harness

import (
	"bytes"
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/failsoft/failsoft/interceptors/pending"
)

// phase is a phase of n store entries and refs reference operations,
// each in one second.
func phase(n, refs int, allocs uint64) Phase {
	return Phase{Store: Throughput{Entries: n, Elapsed: time.Second, Allocs: allocs * uint64(n)},
		Ref: Throughput{Entries: refs, Elapsed: time.Second, Allocs: 10 * uint64(refs)}}
}

func TestPendingGoals(t *testing.T) {
	cases := []struct {
		name string
		rs   []StoreResult
		want []string
	}{
		{
			name: "all met",
			rs: []StoreResult{
				{Store: StoreBolt, Enqueue: phase(400, 500, 160), Drain: phase(250, 500, 230)},
				{Store: StoreRedis, Enqueue: phase(20000, 60000, 51), Drain: phase(9000, 60000, 72)},
			},
			want: []string{
				"boltstore enqueue at least 0.5x the rate of a raw bbolt Put, one fsync'd transaction each: 0.80x (400 entries/s to 500 Puts/s), met",
				"boltstore drain at least 0.5x the rate of a raw bbolt Put, one fsync'd transaction each: 0.50x (250 entries/s to 500 Puts/s), met",
				"redisstore enqueue at least 0.3x the rate of a raw XADD via go-redis, one round trip each: 0.33x (20000 entries/s to 60000 XADDs/s), met",
				"redisstore drain at least 0.15x the rate of a raw XADD via go-redis, one round trip each: 0.15x (9000 entries/s to 60000 XADDs/s), met",
			},
		},
		{
			name: "none met",
			rs: []StoreResult{
				{Store: StoreBolt, Enqueue: phase(249, 500, 160), Drain: phase(100, 500, 230)},
				{Store: StoreRedis, Enqueue: phase(17000, 60000, 51), Drain: phase(8000, 60000, 72)},
			},
			want: []string{
				"boltstore enqueue at least 0.5x the rate of a raw bbolt Put, one fsync'd transaction each: 0.50x (249 entries/s to 500 Puts/s), not met",
				"boltstore drain at least 0.5x the rate of a raw bbolt Put, one fsync'd transaction each: 0.20x (100 entries/s to 500 Puts/s), not met",
				"redisstore enqueue at least 0.3x the rate of a raw XADD via go-redis, one round trip each: 0.28x (17000 entries/s to 60000 XADDs/s), not met",
				"redisstore drain at least 0.15x the rate of a raw XADD via go-redis, one round trip each: 0.13x (8000 entries/s to 60000 XADDs/s), not met",
			},
		},
		{
			name: "failed, skipped or without a reference: left out",
			rs: []StoreResult{
				{Store: StoreBolt, Enqueue: phase(400, 500, 160), Drain: Phase{Store: Throughput{Entries: 3}},
					Failed: map[string]error{cellDrain: errors.New("disk full")}},
				{Store: StoreRedis, Skipped: "redis-server is not installed"},
			},
			want: []string{
				"boltstore enqueue at least 0.5x the rate of a raw bbolt Put, one fsync'd transaction each: 0.80x (400 entries/s to 500 Puts/s), met",
			},
		},
		{
			name: "reference failed",
			rs: []StoreResult{
				{Store: StoreBolt, Enqueue: phase(400, 500, 160), Drain: phase(250, 500, 230),
					Failed: map[string]error{cellReference: errors.New("no space")}},
				{Store: StoreRedis, Enqueue: phase(20000, 0, 51), Drain: phase(9000, 0, 72)},
			},
			want: nil,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			for _, g := range PendingGoals(tc.rs) {
				got = append(got, g.String())
			}
			if strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
				t.Errorf("PendingGoals:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
		})
	}
}

func TestPendingMarkdown(t *testing.T) {
	cfg := PendingConfig{Entries: 1000, Budget: 1500 * time.Millisecond, Dir: "/var/tmp"}
	cases := []struct {
		name string
		rs   []StoreResult
		want string
	}{
		{
			name: "measured",
			rs: []StoreResult{
				{Store: StoreBolt, Enqueue: phase(400, 500, 160), Drain: phase(200, 500, 230)},
				{Store: StoreRedis, Enqueue: phase(20000, 60000, 51), Drain: phase(9000, 60000, 72)},
			},
			want: `
Pending stores (interceptors/pending): a Queue enqueues entries into each store, then drains them; each phase runs in 20ms chunks, each followed by as long of the store's raw operation on the same disk or server:

| store | reference | reference ops/s | allocs/op | enqueue entries/s (of reference) | allocs/entry | drain entries/s (of reference) | allocs/entry |
| --- | --- | --- | --- | --- | --- | --- | --- |
| boltstore (a bbolt file in /var/tmp) | raw bbolt Put, one fsync'd transaction each | 500 | 10 | 400 (0.80x) | 160 | 200 (0.40x) | 230 |
| redisstore (redis-server on 127.0.0.1, no persistence) | raw XADD via go-redis, one round trip each | 60000 | 10 | 20000 (0.33x) | 51 | 9000 (0.15x) | 72 |

Enqueue: Queue.Enqueue of a 200-byte request that keeps one metadata entry, as the interceptor queues a call it cannot send. Drain: Queue.DrainOnce passes of the library's default batch (64) over a connection that accepts every call: claim, send again, settle. Each store gets at most 1000 entries and each phase at most 1.5s; allocations count the whole process during the store's (or the reference's) chunks.

boltstore: 400 entries enqueued in 1.00 s, 200 of them drained in 1.00 s.
redisstore: 20000 entries enqueued in 1.00 s, 9000 of them drained in 1.00 s.

The pending stores' goals in this run:
- boltstore enqueue at least 0.5x the rate of a raw bbolt Put, one fsync'd transaction each: 0.80x (400 entries/s to 500 Puts/s), met
- boltstore drain at least 0.5x the rate of a raw bbolt Put, one fsync'd transaction each: 0.40x (200 entries/s to 500 Puts/s), not met
- redisstore enqueue at least 0.3x the rate of a raw XADD via go-redis, one round trip each: 0.33x (20000 entries/s to 60000 XADDs/s), met
- redisstore drain at least 0.15x the rate of a raw XADD via go-redis, one round trip each: 0.15x (9000 entries/s to 60000 XADDs/s), met
`,
		},
		{
			name: "a failed drain and no redis-server",
			rs: []StoreResult{
				{Store: StoreBolt, Enqueue: phase(400, 500, 160), Drain: Phase{Ref: phase(0, 500, 0).Ref},
					Failed: map[string]error{cellDrain: errors.New("boltstore: settle: disk | full\nmore")}},
				{Store: StoreRedis, Skipped: "redis-server is not installed (apt-get install redis-server)"},
			},
			want: `
Pending stores (interceptors/pending): a Queue enqueues entries into each store, then drains them; each phase runs in 20ms chunks, each followed by as long of the store's raw operation on the same disk or server:

| store | reference | reference ops/s | allocs/op | enqueue entries/s (of reference) | allocs/entry | drain entries/s (of reference) | allocs/entry |
| --- | --- | --- | --- | --- | --- | --- | --- |
| boltstore (a bbolt file in /var/tmp) | raw bbolt Put, one fsync'd transaction each | 500 | 10 | 400 (0.80x) | 160 | failed: boltstore: settle: disk / full |  |
| redisstore (redis-server on 127.0.0.1, no persistence) | raw XADD via go-redis, one round trip each | skipped: redis-server is not installed (apt-get install redis-server) | – | – | – | – | – |

Enqueue: Queue.Enqueue of a 200-byte request that keeps one metadata entry, as the interceptor queues a call it cannot send. Drain: Queue.DrainOnce passes of the library's default batch (64) over a connection that accepts every call: claim, send again, settle. Each store gets at most 1000 entries and each phase at most 1.5s; allocations count the whole process during the store's (or the reference's) chunks.

boltstore: 400 entries enqueued in 1.00 s, 0 of them drained in 0.00 s.

boltstore, drain: failed twice: boltstore: settle: disk | full
more

The pending stores' goals in this run:
- boltstore enqueue at least 0.5x the rate of a raw bbolt Put, one fsync'd transaction each: 0.80x (400 entries/s to 500 Puts/s), met
`,
		},
		{name: "not run", rs: nil, want: ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var b bytes.Buffer
			PendingMarkdown(&b, tc.rs, cfg)
			if b.String() != tc.want {
				t.Errorf("PendingMarkdown:\n%s\nwant:\n%s", b.String(), tc.want)
			}
		})
	}
}

func TestInterleave(t *testing.T) {
	boom := errors.New("boom")
	cases := []struct {
		name             string
		stepFails        int // the step that fails; 0: none
		refFails         int // the reference operation that fails; 0: none
		wantEntries      int
		wantErr, wantRef error
	}{
		{name: "done", wantEntries: 5},
		{name: "the store fails", stepFails: 3, wantEntries: 2, wantErr: boom},
		{name: "the reference fails", refFails: 1, wantEntries: 5, wantRef: boom},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			steps, refs := 0, 0
			p, refErr, err := Interleave(time.Minute, func() (int, bool, error) {
				steps++
				if steps == tc.stepFails {
					return 0, false, boom
				}
				return 1, steps == 5, nil
			}, func(i int) error {
				if i != refs {
					t.Errorf("reference operation %d after %d", i, refs)
				}
				refs++
				if refs == tc.refFails {
					return boom
				}
				return nil
			})
			if err != tc.wantErr || refErr != tc.wantRef || p.Store.Entries != tc.wantEntries {
				t.Fatalf("Interleave = %d entries, %v, %v; want %d, %v, %v", p.Store.Entries, refErr, err, tc.wantEntries, tc.wantRef, tc.wantErr)
			}
			if tc.wantErr == nil && (refs == 0 || p.Ref.Entries != refs-min(1, tc.refFails)) {
				t.Errorf("%d reference operations, %d counted; want at least one, the failed one not counted", refs, p.Ref.Entries)
			}
		})
	}
}

// failingClaims is a store whose Claim fails.
type failingClaims struct{ pending.Store }

func (failingClaims) Claim(context.Context, time.Time, time.Duration, int) ([]pending.Entry, error) {
	return nil, errors.New("claim refused")
}

// TestMeasureFailures: a failed measurement is tried once more, then
// marks only its cells.
func TestMeasureFailures(t *testing.T) {
	cfg := PendingConfig{Entries: 10, Budget: time.Minute}
	memory := func(t *testing.T) pending.Store {
		s, err := pending.NewMemoryStore(100)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	okRef := func(int) error { return nil }
	cases := []struct {
		name        string
		open        func(t *testing.T) (pending.Store, func(int) error, error)
		failed      []string
		wantEnqueue int
	}{
		{name: "measured", open: func(t *testing.T) (pending.Store, func(int) error, error) { return memory(t), okRef, nil },
			wantEnqueue: 10},
		{name: "the store cannot open", open: func(*testing.T) (pending.Store, func(int) error, error) { return nil, nil, errors.New("no file") },
			failed: []string{cellDrain, cellEnqueue}},
		{name: "the drain fails", open: func(t *testing.T) (pending.Store, func(int) error, error) {
			return failingClaims{memory(t)}, okRef, nil
		}, failed: []string{cellDrain}, wantEnqueue: 10},
		{name: "the reference fails", open: func(t *testing.T) (pending.Store, func(int) error, error) {
			return memory(t), func(int) error { return errors.New("no disk") }, nil
		}, failed: []string{cellReference}, wantEnqueue: 10},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			opens := 0
			var r StoreResult
			r.measure(context.Background(), cfg, func() (pending.Store, func(int) error, func(), error) {
				opens++
				s, ref, err := tc.open(t)
				return s, ref, func() {}, err
			})
			var failed []string
			for _, c := range []string{cellDrain, cellEnqueue, cellReference} {
				if r.Failed[c] != nil {
					failed = append(failed, c)
				}
			}
			if strings.Join(failed, ",") != strings.Join(tc.failed, ",") || r.Enqueue.Store.Entries != tc.wantEnqueue {
				t.Errorf("failed cells %v with %d entries enqueued; want %v, %d (%v)", failed, r.Enqueue.Store.Entries, tc.failed, tc.wantEnqueue, r.Failed)
			}
			if wantOpens := 1 + min(1, len(tc.failed)); opens != wantOpens {
				t.Errorf("opened %d times, want %d", opens, wantOpens)
			}
			if len(tc.failed) == 0 && r.Drain.Store.Entries != tc.wantEnqueue {
				t.Errorf("drained %d, want %d", r.Drain.Store.Entries, tc.wantEnqueue)
			}
		})
	}
}

// TestRunPending measures both stores with a few entries: the bbolt file
// on disk and a redis-server started for the run, both gone afterwards.
func TestRunPending(t *testing.T) {
	dir := t.TempDir()
	rs := RunPending(context.Background(), PendingConfig{Entries: 20, Budget: 10 * time.Second, Dir: dir}, nil)
	if len(rs) != 2 {
		t.Fatalf("RunPending = %d stores, want 2", len(rs))
	}
	for _, r := range rs {
		if r.Skipped != "" {
			t.Logf("%s: %s", r.Store, r.Skipped)
			continue
		}
		if len(r.Failed) > 0 || r.Enqueue.Store.Entries != 20 || r.Drain.Store.Entries != 20 ||
			r.Enqueue.Ratio() == 0 || r.Drain.Ratio() == 0 || r.Enqueue.Store.Allocs == 0 {
			t.Errorf("%s: %+v, want 20 entries enqueued and drained against a reference", r.Store, r)
		}
	}
	if rs[0].Skipped != "" {
		t.Errorf("boltstore skipped: %s", rs[0].Skipped)
	}
	if left, err := os.ReadDir(dir); err != nil || len(left) > 0 {
		t.Errorf("left in the directory: %v, %v", left, err)
	}
}
