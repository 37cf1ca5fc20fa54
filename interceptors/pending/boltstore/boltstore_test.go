package boltstore_test

import (
	"fmt"
	"path/filepath"
	"testing"

	bolt "go.etcd.io/bbolt"

	"github.com/failsoft/failsoft/interceptors/pending"
	"github.com/failsoft/failsoft/interceptors/pending/boltstore"
	"github.com/failsoft/failsoft/interceptors/pending/storetest"
	policytestv1 "github.com/failsoft/failsoft/proto/failsoft/policytest/v1"
)

func open(t *testing.T, path string, max int) *boltstore.Store {
	t.Helper()
	s, err := boltstore.Open(path, boltstore.WithMaxEntries(max))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func TestContract(t *testing.T) {
	storetest.Run(t, func(t *testing.T, max int) pending.Store {
		return open(t, filepath.Join(t.TempDir(), "pending.db"), max)
	})
}

func TestOpenRejectsBadOptions(t *testing.T) {
	dir := t.TempDir()
	for _, o := range []boltstore.Option{boltstore.WithMaxEntries(0), boltstore.WithLockTimeout(0)} {
		if _, err := boltstore.Open(filepath.Join(dir, "x.db"), o); err == nil {
			t.Fatal("a bad option was accepted")
		}
	}
}

func TestSecondOpenFailsWhileHeld(t *testing.T) {
	path := filepath.Join(t.TempDir(), "pending.db")
	open(t, path, 10)
	if s, err := boltstore.Open(path, boltstore.WithLockTimeout(10e6)); err == nil {
		_ = s.Close()
		t.Fatal("a second Open of a held file succeeded")
	}
}

func BenchmarkStore(b *testing.B) {
	storetest.Bench(b, policytestv1.TunedService_KeyedWrite_FullMethodName, func(b *testing.B, max int) pending.Store {
		s, err := boltstore.Open(filepath.Join(b.TempDir(), "pending.db"), boltstore.WithMaxEntries(max))
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = s.Close() })
		return s
	})
}

// BenchmarkRawUpdate is what bbolt itself does on this machine: one Put
// of an entry-sized value in one fsync'd transaction, the floor under
// every write of the store.
func BenchmarkRawUpdate(b *testing.B) {
	db, err := bolt.Open(filepath.Join(b.TempDir(), "raw.db"), 0o600, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	v := make([]byte, 400)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		err := db.Update(func(tx *bolt.Tx) error {
			bk, err := tx.CreateBucketIfNotExists([]byte("b"))
			if err != nil {
				return err
			}
			return bk.Put([]byte(fmt.Sprintf("key-%09d", i)), v)
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "entries/s")
}
