package boltstore_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"time"

	"github.com/failsoft/failsoft/interceptors/pending"
	"github.com/failsoft/failsoft/interceptors/pending/boltstore"
)

// Entries survive the process: a store opened again on the same file has
// them.
func ExampleOpen() {
	dir, err := os.MkdirTemp("", "pending")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "pending.db")

	s, err := boltstore.Open(path, boltstore.WithMaxEntries(10_000))
	if err != nil {
		log.Fatal(err)
	}
	now := time.Now()
	_ = s.Add(context.Background(), pending.Entry{Key: "order-42", Method: "/pay.v1.Pay/Charge", Enqueued: now, NotBefore: now})
	_ = s.Close()

	s, err = boltstore.Open(path)
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()
	st, _ := s.Stats(context.Background())
	fmt.Println("waiting after reopening:", st.Depth)
	// Output: waiting after reopening: 1
}
