package redisstore_test

import (
	"log"

	"github.com/redis/go-redis/v9"

	"github.com/failsoft/failsoft/interceptors/pending"
	"github.com/failsoft/failsoft/interceptors/pending/redisstore"
)

// Every replica of the checkout service opens the same queue, each as its
// own consumer.
func ExampleNew() {
	rc := redis.NewClient(&redis.Options{Addr: "redis.internal:6379"})
	defer rc.Close()
	store, err := redisstore.New(rc, redisstore.WithQueue("checkout"), redisstore.WithMaxEntries(100_000))
	if err != nil {
		log.Fatal(err)
	}
	q, err := pending.New(store, pending.ForMethods("/payments.v1.PaymentService/Charge"))
	if err != nil {
		log.Fatal(err)
	}
	defer q.Close()
	// Install q.UnaryClientInterceptor() and run q.Run as in pending.New's
	// example.
}
