package boltstore

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/failsoft/failsoft/interceptors/internal/option"
	"github.com/failsoft/failsoft/interceptors/pending"
)

var (
	bucketEntries = []byte("entries") // key -> Entry
	bucketDue     = []byte("due")     // NotBefore + key -> nil
	bucketAge     = []byte("age")     // Enqueued + key -> nil
	bucketDead    = []byte("dead")    // key -> Dead
	bucketDied    = []byte("died")    // Died + key -> nil
	bucketMeta    = []byte("meta")    // counters
	countWaiting  = []byte("waiting") // entries in bucketEntries
	countDead     = []byte("dead")    // entries in bucketDead
	allBuckets    = [][]byte{bucketEntries, bucketDue, bucketAge, bucketDead, bucketDied, bucketMeta}
	errCorruptIdx = errors.New("boltstore: index names a missing entry")
)

// Store is a pending.Store in a bbolt file. Create it with Open.
type Store struct {
	db  *bolt.DB
	max int
}

var _ pending.Store = (*Store)(nil)

// Option configures a Store.
type Option func(*config) error

type config struct {
	max     int
	timeout time.Duration
}

// WithMaxEntries sets how many entries may wait; Add fails with
// pending.ErrFull beyond it. The default is 10,000.
func WithMaxEntries(n int) Option {
	return func(c *config) error {
		if n < 1 {
			return fmt.Errorf("boltstore.WithMaxEntries(%d): want at least 1", n)
		}
		c.max = n
		return nil
	}
}

// WithLockTimeout sets how long Open waits for another process to release
// the file; the default is one second.
func WithLockTimeout(d time.Duration) Option {
	return func(c *config) error {
		if d <= 0 {
			return fmt.Errorf("boltstore.WithLockTimeout(%v): want a positive duration", d)
		}
		c.timeout = d
		return nil
	}
}

// Open opens the store in the file at path, creating it if needed. One
// process at a time can hold the file; Open fails after the lock timeout
// when another does.
func Open(path string, opts ...Option) (*Store, error) {
	cfg := config{max: 10_000, timeout: time.Second}
	if err := option.Apply(&cfg, opts...); err != nil {
		return nil, err
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: cfg.timeout})
	if err != nil {
		return nil, fmt.Errorf("boltstore: open %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range allBuckets {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("boltstore: init %s: %w", path, err)
	}
	return &Store{db: db, max: cfg.max}, nil
}

// Close closes the file.
func (s *Store) Close() error { return s.db.Close() }

// stamp is an index key: t as 8 big-endian bytes that sort as times do,
// then key.
func stamp(t time.Time, key string) []byte {
	b := make([]byte, 8, 8+len(key))
	binary.BigEndian.PutUint64(b, uint64(t.UnixNano())^(1<<63))
	return append(b, key...)
}

func stampTime(b []byte) time.Time {
	return time.Unix(0, int64(binary.BigEndian.Uint64(b[:8])^(1<<63)))
}

func counter(tx *bolt.Tx, name []byte) int {
	v := tx.Bucket(bucketMeta).Get(name)
	if len(v) != 8 {
		return 0
	}
	return int(binary.BigEndian.Uint64(v))
}

func addCounter(tx *bolt.Tx, name []byte, d int) error {
	b := make([]byte, 8)
	binary.BigEndian.PutUint64(b, uint64(counter(tx, name)+d))
	return tx.Bucket(bucketMeta).Put(name, b)
}

func getEntry(tx *bolt.Tx, key string) (pending.Entry, bool, error) {
	v := tx.Bucket(bucketEntries).Get([]byte(key))
	if v == nil {
		return pending.Entry{}, false, nil
	}
	var e pending.Entry
	if err := e.UnmarshalBinary(v); err != nil {
		return e, false, fmt.Errorf("boltstore: entry %q: %w", key, err)
	}
	return e, true, nil
}

func putEntry(tx *bolt.Tx, e pending.Entry) error {
	v, err := e.MarshalBinary()
	if err != nil {
		return err
	}
	return tx.Bucket(bucketEntries).Put([]byte(e.Key), v)
}

// Add implements pending.Store.
func (s *Store) Add(_ context.Context, e pending.Entry) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		k := []byte(e.Key)
		if tx.Bucket(bucketDead).Get(k) != nil {
			return fmt.Errorf("%w: %q", pending.ErrDead, e.Key)
		}
		if tx.Bucket(bucketEntries).Get(k) != nil {
			return nil
		}
		if counter(tx, countWaiting) >= s.max {
			return pending.FullError(s.max)
		}
		if err := putEntry(tx, e); err != nil {
			return err
		}
		if err := tx.Bucket(bucketDue).Put(stamp(e.NotBefore, e.Key), nil); err != nil {
			return err
		}
		if err := tx.Bucket(bucketAge).Put(stamp(e.Enqueued, e.Key), nil); err != nil {
			return err
		}
		return addCounter(tx, countWaiting, 1)
	})
}

// Claim implements pending.Store.
func (s *Store) Claim(_ context.Context, now time.Time, lease time.Duration, max int) ([]pending.Entry, error) {
	var out []pending.Entry
	err := s.db.Update(func(tx *bolt.Tx) error {
		out = out[:0]
		due := tx.Bucket(bucketDue)
		var keys []string
		c := due.Cursor()
		for k, _ := c.First(); k != nil && len(keys) < max && !stampTime(k).After(now); k, _ = c.Next() {
			keys = append(keys, string(k[8:]))
		}
		for _, key := range keys {
			e, ok, err := getEntry(tx, key)
			if err != nil {
				return err
			}
			if !ok {
				return fmt.Errorf("%w: %q", errCorruptIdx, key)
			}
			if err := s.move(tx, e, now.Add(lease)); err != nil {
				return err
			}
			e.NotBefore = now.Add(lease)
			out = append(out, e)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// move stores e due at at, from its stored due time.
func (s *Store) move(tx *bolt.Tx, e pending.Entry, at time.Time) error {
	old, ok, err := getEntry(tx, e.Key)
	if err != nil || !ok {
		return err
	}
	due := tx.Bucket(bucketDue)
	if err := due.Delete(stamp(old.NotBefore, e.Key)); err != nil {
		return err
	}
	old.Attempts, old.LastError, old.NotBefore = e.Attempts, e.LastError, at
	if err := putEntry(tx, old); err != nil {
		return err
	}
	return due.Put(stamp(at, e.Key), nil)
}

// Reschedule implements pending.Store.
func (s *Store) Reschedule(_ context.Context, e pending.Entry) error {
	return s.db.Update(func(tx *bolt.Tx) error { return s.move(tx, e, e.NotBefore) })
}

// remove deletes the waiting entry with key and its index keys.
func remove(tx *bolt.Tx, key string) error {
	e, ok, err := getEntry(tx, key)
	if err != nil || !ok {
		return err
	}
	if err := tx.Bucket(bucketDue).Delete(stamp(e.NotBefore, key)); err != nil {
		return err
	}
	if err := tx.Bucket(bucketAge).Delete(stamp(e.Enqueued, key)); err != nil {
		return err
	}
	if err := tx.Bucket(bucketEntries).Delete([]byte(key)); err != nil {
		return err
	}
	return addCounter(tx, countWaiting, -1)
}

// Settle implements pending.Store.
func (s *Store) Settle(_ context.Context, key string) error {
	return s.db.Update(func(tx *bolt.Tx) error { return remove(tx, key) })
}

// Bury implements pending.Store.
func (s *Store) Bury(_ context.Context, d pending.Dead) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		if err := remove(tx, d.Key); err != nil {
			return err
		}
		dead := tx.Bucket(bucketDead)
		if old := dead.Get([]byte(d.Key)); old != nil {
			var o pending.Dead
			if err := o.UnmarshalBinary(old); err == nil {
				if err := tx.Bucket(bucketDied).Delete(stamp(o.Died, d.Key)); err != nil {
					return err
				}
			}
		} else if err := addCounter(tx, countDead, 1); err != nil {
			return err
		}
		v, err := d.MarshalBinary()
		if err != nil {
			return err
		}
		if err := dead.Put([]byte(d.Key), v); err != nil {
			return err
		}
		return tx.Bucket(bucketDied).Put(stamp(d.Died, d.Key), nil)
	})
}

// DeadLetters implements pending.Store.
func (s *Store) DeadLetters(_ context.Context, max int) ([]pending.Dead, error) {
	var out []pending.Dead
	err := s.db.View(func(tx *bolt.Tx) error {
		dead := tx.Bucket(bucketDead)
		c := tx.Bucket(bucketDied).Cursor()
		for k, _ := c.First(); k != nil && (max <= 0 || len(out) < max); k, _ = c.Next() {
			var d pending.Dead
			if err := d.UnmarshalBinary(dead.Get(k[8:])); err != nil {
				return fmt.Errorf("boltstore: dead entry %q: %w", k[8:], err)
			}
			out = append(out, d)
		}
		return nil
	})
	return out, err
}

// Forget implements pending.Store.
func (s *Store) Forget(_ context.Context, key string) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		dead := tx.Bucket(bucketDead)
		v := dead.Get([]byte(key))
		if v == nil {
			return nil
		}
		var d pending.Dead
		if err := d.UnmarshalBinary(v); err == nil {
			if err := tx.Bucket(bucketDied).Delete(stamp(d.Died, key)); err != nil {
				return err
			}
		}
		if err := dead.Delete([]byte(key)); err != nil {
			return err
		}
		return addCounter(tx, countDead, -1)
	})
}

// Stats implements pending.Store.
func (s *Store) Stats(context.Context) (pending.Stats, error) {
	var st pending.Stats
	err := s.db.View(func(tx *bolt.Tx) error {
		st.Depth, st.Dead = counter(tx, countWaiting), counter(tx, countDead)
		if k, _ := tx.Bucket(bucketAge).Cursor().First(); k != nil {
			st.Oldest = stampTime(k)
		}
		return nil
	})
	return st, err
}
