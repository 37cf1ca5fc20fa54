package boltstore_test

import (
	"path/filepath"
	"testing"

	"github.com/failsoft/failsoft/interceptors/pending"
	"github.com/failsoft/failsoft/interceptors/pending/boltstore"
	"github.com/failsoft/failsoft/interceptors/pending/storetest"
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
