package harness

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	bolt "go.etcd.io/bbolt"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/failsoft/failsoft/interceptors/pending"
	"github.com/failsoft/failsoft/interceptors/pending/boltstore"
	"github.com/failsoft/failsoft/interceptors/pending/redisstore"
	policytestv1 "github.com/failsoft/failsoft/proto/failsoft/policytest/v1"
)

// The stores of the pending-stores table.
const (
	StoreBolt  = "boltstore"
	StoreRedis = "redisstore"
)

// The pending-stores table's cells, which also name the measurements that
// fill them in StoreResult.Failed.
const (
	cellReference = "reference"
	cellEnqueue   = "enqueue"
	cellDrain     = "drain"
)

// PendingConfig sizes the pending-stores measurements. Each phase
// (reference, enqueue, drain) stops at Entries or after Budget, whichever
// comes first.
type PendingConfig struct {
	Entries int
	Budget  time.Duration
	// Dir is where the bbolt files go (the disk measured); "" is the
	// system's temporary directory.
	Dir string
}

// DefaultPendingConfig keeps each store to a few seconds.
func DefaultPendingConfig() PendingConfig {
	return PendingConfig{Entries: 10000, Budget: 1500 * time.Millisecond}
}

// Throughput is what one phase did: Entries in Elapsed, with Allocs heap
// allocations.
type Throughput struct {
	Entries int
	Elapsed time.Duration
	Allocs  uint64
}

// PerSecond is the phase's entries (or operations) per second.
func (t Throughput) PerSecond() float64 {
	if t.Elapsed <= 0 {
		return 0
	}
	return float64(t.Entries) / t.Elapsed.Seconds()
}

// AllocsPerEntry is the phase's heap allocations per entry.
func (t Throughput) AllocsPerEntry() float64 {
	if t.Entries == 0 {
		return 0
	}
	return float64(t.Allocs) / float64(t.Entries)
}

// Phase is a store's phase (enqueue or drain) and the reference
// operation timed in alternation with it.
type Phase struct {
	Store, Ref Throughput
}

// Ratio is the store's entries per second over the reference's
// operations per second in the same phase; 0 when either is missing.
func (p Phase) Ratio() float64 {
	if p.Store.PerSecond() == 0 || p.Ref.PerSecond() == 0 {
		return 0
	}
	return p.Store.PerSecond() / p.Ref.PerSecond()
}

// StoreResult is one store's row of the pending-stores table.
type StoreResult struct {
	Store          string
	Enqueue, Drain Phase
	// Skipped, when set, says why the store was not measured at all.
	Skipped string
	// Failed holds the measurements that failed twice, by cell.
	Failed map[string]error
}

// Reference is the reference operation over both phases.
func (r StoreResult) Reference() Throughput {
	a, b := r.Enqueue.Ref, r.Drain.Ref
	return Throughput{Entries: a.Entries + b.Entries, Elapsed: a.Elapsed + b.Elapsed, Allocs: a.Allocs + b.Allocs}
}

// fail records err, when there is one, as the failure of the
// measurement that fills cell, and reports whether there was one.
func (r *StoreResult) fail(cell string, err error) bool { return markFailed(&r.Failed, cell, err) }

// referenceName names a store's reference operation.
func referenceName(store string) string {
	if store == StoreBolt {
		return "raw bbolt Put, one fsync'd transaction each"
	}
	return "raw XADD via go-redis, one round trip each"
}

// pendingMethod is the opted-in method whose calls are queued: a keyed
// write of the test service.
const pendingMethod = policytestv1.TunedService_KeyedWrite_FullMethodName

// errNoRedis marks a run without redis-server installed.
var errNoRedis = errors.New("redis-server is not installed (apt-get install redis-server)")

// RunPending measures both stores, each with its reference in the same
// run. A measurement that fails is tried once more; if it fails again,
// only its cells are marked failed.
func RunPending(ctx context.Context, cfg PendingConfig, progress io.Writer) []StoreResult {
	step := func(store string) {
		if progress != nil {
			fmt.Fprintf(progress, "pending stores, %s: enqueue and drain, interleaved with %s\n", store, referenceName(store))
		}
	}
	bs := StoreResult{Store: StoreBolt}
	dir, err := os.MkdirTemp(cfg.Dir, "failsoft-pending-bench-")
	if err != nil {
		bs.failAll(err)
	} else {
		defer os.RemoveAll(dir)
		n := 0
		file := func() string { n++; return filepath.Join(dir, fmt.Sprintf("bench-%d.db", n)) }
		step(StoreBolt)
		bs.measure(ctx, cfg, func() (pending.Store, func(int) error, func(), error) {
			s, err := boltstore.Open(file(), boltstore.WithMaxEntries(cfg.Entries+1))
			if err != nil {
				return nil, nil, nil, err
			}
			ref, closeRef, err := boltPut(file())
			if err != nil {
				_ = s.Close()
				return nil, nil, nil, err
			}
			return s, ref, func() { closeRef(); _ = s.Close() }, nil
		})
	}

	rs := StoreResult{Store: StoreRedis}
	srv, err := twice(ctx, startRedis)
	switch {
	case errors.Is(err, errNoRedis):
		rs.Skipped = err.Error()
	case err != nil:
		rs.failAll(err)
	default:
		defer srv.stop()
		rc := redis.NewClient(&redis.Options{Addr: srv.addr, MaxRetries: -1, DialTimeout: time.Second})
		defer rc.Close()
		n := 0
		queue := func() string { n++; return fmt.Sprintf("bench-%d", n) }
		step(StoreRedis)
		rs.measure(ctx, cfg, func() (pending.Store, func(int) error, func(), error) {
			s, err := redisstore.New(rc, redisstore.WithQueue(queue()), redisstore.WithMaxEntries(cfg.Entries+1))
			return s, redisXAdd(ctx, rc, "bench:raw:"+queue()), func() {}, err
		})
	}
	return []StoreResult{bs, rs}
}

func (r *StoreResult) failAll(err error) {
	for _, c := range []string{cellReference, cellEnqueue, cellDrain} {
		r.fail(c, err)
	}
}

// drainError marks a failure after the enqueue phase, which stands.
type drainError struct{ err error }

func (e drainError) Error() string { return e.err.Error() }
func (e drainError) Unwrap() error { return e.err }

// refError marks a failure of the reference operation; the store's
// phases went on without it.
type refError struct{ err error }

func (e refError) Error() string { return e.err.Error() }
func (e refError) Unwrap() error { return e.err }

// measure opens a fresh store and reference, enqueues and drains, and
// fills the row's cells.
func (r *StoreResult) measure(ctx context.Context, cfg PendingConfig, open func() (pending.Store, func(int) error, func(), error)) {
	type phases struct{ enq, drain Phase }
	res, err := twice(ctx, func() (phases, error) {
		s, ref, closeAll, err := open()
		if err != nil {
			return phases{}, err
		}
		defer closeAll()
		enq, drain, err := EnqueueDrain(ctx, s, ref, cfg)
		return phases{enq, drain}, err
	})
	var de drainError
	var re refError
	switch {
	case errors.As(err, &re):
		r.Enqueue, r.Drain = res.enq, res.drain
		r.fail(cellReference, re.err)
	case errors.As(err, &de):
		r.Enqueue = res.enq
		r.fail(cellDrain, de.err)
	case r.fail(cellEnqueue, err):
		r.fail(cellDrain, errors.New("not measured: enqueue failed"))
	default:
		r.Enqueue, r.Drain = res.enq, res.drain
	}
}

// EnqueueDrain measures a store as a user's Queue uses it, each phase in
// alternation with ref, the raw operation of the store's disk or server
// (see Interleave). Enqueue: Queue.Enqueue of a 200-byte request with a
// metadata entry kept, as the interceptor queues a call that cannot be
// sent (the request marshalled, the entry added). Drain: Queue.DrainOnce
// passes with the library's default batch over a connection that accepts
// every call, which claim the entries, send each again and settle it,
// until all are settled. The keys are made before the clock starts.
// When ref fails, the phases go on without it and the error is a
// refError.
func EnqueueDrain(ctx context.Context, s pending.Store, ref func(i int) error, cfg PendingConfig) (enq, drain Phase, err error) {
	q, err := pending.New(s, pending.ForMethods(pendingMethod), pending.WithMetadata("tenant"))
	if err != nil {
		return enq, drain, err
	}
	defer q.Close()
	keys := benchKeys(cfg.Entries)
	req := &policytestv1.PingRequest{Payload: strings.Repeat("x", 197)}
	cause := status.Error(codes.Unavailable, "failsoft: breaker: open")
	mctx := metadata.AppendToOutgoingContext(ctx, "tenant", "acme")
	i := 0
	enq, refErr, err := Interleave(cfg.Budget, func() (int, bool, error) {
		err := q.Enqueue(mctx, pendingMethod, keys[i], req, cause)
		if d := (*pending.Deferred)(nil); !errors.As(err, &d) {
			return 0, false, fmt.Errorf("enqueue of entry %d: %v, want a *pending.Deferred", i, err)
		}
		i++
		return 1, i >= cfg.Entries, nil
	}, ref)
	if err != nil {
		return enq, drain, err
	}
	settled := 0
	drain, refErr2, err := Interleave(cfg.Budget, func() (int, bool, error) {
		r, err := q.DrainOnce(ctx, acceptConn{})
		if err == nil && (r.Settled == 0 || r.Retry+r.Dead > 0) {
			err = fmt.Errorf("drain pass: %+v with %d of %d settled, want only settled entries", r, settled, enq.Store.Entries)
		}
		settled += r.Settled
		return r.Settled, settled >= enq.Store.Entries, err
	}, ref)
	if err != nil {
		return enq, drain, drainError{err}
	}
	if err := cmp.Or(refErr, refErr2); err != nil {
		return enq, drain, refError{err}
	}
	return enq, drain, nil
}

// chunk is how long the store runs before the reference runs as long.
const chunk = 20 * time.Millisecond

// Interleave runs step until it says done, fails, or has run for budget,
// in chunks of about 20 ms (a step is never cut short), and after each
// chunk runs ref as long as that chunk took (at least once), so that a slow spell of a
// shared disk or machine falls on both alike. It counts step's entries
// and ref's operations, and the process's heap allocations during the
// chunks of each. ref's first error stops ref and is returned as refErr.
func Interleave(budget time.Duration, step func() (n int, done bool, err error), ref func(i int) error) (p Phase, refErr error, err error) {
	var before, after runtime.MemStats
	runtime.GC()
	refs := 0
	for p.Store.Elapsed < budget {
		runtime.ReadMemStats(&before)
		start, done := time.Now(), false
		for !done && time.Since(start) < chunk {
			var n int
			n, done, err = step()
			p.Store.Entries += n
			if err != nil {
				break
			}
		}
		took := time.Since(start)
		runtime.ReadMemStats(&after)
		p.Store.Elapsed += took
		p.Store.Allocs += after.Mallocs - before.Mallocs
		if err != nil {
			return p, refErr, err
		}
		if ref != nil && refErr == nil {
			runtime.ReadMemStats(&before)
			// At least one operation, however short the chunk.
			start := time.Now()
			for first := true; first || time.Since(start) < took; first = false {
				if refErr = ref(refs); refErr != nil {
					break
				}
				refs++
				p.Ref.Entries++
			}
			p.Ref.Elapsed += time.Since(start)
			runtime.ReadMemStats(&after)
			p.Ref.Allocs += after.Mallocs - before.Mallocs
		}
		if done {
			break
		}
	}
	return p, refErr, nil
}

// boltPut returns the bbolt reference: one 200-byte Put per transaction,
// which bbolt commits with fsync, in a fresh file at path.
func boltPut(path string) (func(i int) error, func(), error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		return nil, nil, err
	}
	bucket, val := []byte("b"), make([]byte, 200)
	if err := db.Update(func(tx *bolt.Tx) error { _, err := tx.CreateBucket(bucket); return err }); err != nil {
		_ = db.Close()
		return nil, nil, err
	}
	put := func(i int) error {
		return db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucket).Put(fmt.Appendf(nil, "ref-%09d", i), val) })
	}
	return put, func() { _ = db.Close() }, nil
}

// redisXAdd returns the Redis reference: one XADD of a key and a
// 200-byte value per round trip, as redis-benchmark's XADD test sends
// them one at a time.
func redisXAdd(ctx context.Context, rc *redis.Client, stream string) func(i int) error {
	val := strings.Repeat("x", 200)
	return func(i int) error {
		return rc.XAdd(ctx, &redis.XAddArgs{Stream: stream, Values: []any{"key", i, "entry", val}}).Err()
	}
}

func benchKeys(n int) []string {
	keys := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprintf("bench-%09d", i)
	}
	return keys
}

// acceptConn answers every call with success without sending it.
type acceptConn struct{ grpc.ClientConnInterface }

func (acceptConn) Invoke(context.Context, string, any, any, ...grpc.CallOption) error { return nil }
