package redisstore_test

import (
	"log"

	"github.com/redis/go-redis/v9"

	"github.com/failsoft/failsoft/interceptors/idempotency"
	"github.com/failsoft/failsoft/interceptors/idempotency/redisstore"
)

// Replicas of a service share their idempotency keys through one Redis.
func ExampleNew() {
	rc := redis.NewClient(&redis.Options{Addr: "redis.internal:6379"})
	defer rc.Close()
	st, err := redisstore.New(rc, redisstore.WithPrefix("payments:idem:"))
	if err != nil {
		log.Fatal(err)
	}
	srv, err := idempotency.NewServer(idempotency.WithStore(st), idempotency.WithIdentity(idempotency.CertificateIdentity))
	if err != nil {
		log.Fatal(err)
	}
	_ = srv.UnaryServerInterceptor() // chain it into grpc.NewServer
}

func ExampleStore_RedisKey() {
	rc := redis.NewClient(&redis.Options{})
	defer rc.Close()
	st, _ := redisstore.New(rc)
	_ = st.RedisKey(idempotency.Key{Identity: "tenant-1", Method: "/pay.v1.Pay/Charge", Key: "order-42"})
}

// Each caller holds at most 10,000 keys: a caller that sends more loses
// its own oldest outcomes, not another caller's. Run Redis with
// maxmemory-policy noeviction.
func ExampleWithMaxEntriesPerIdentity() {
	rc := redis.NewClient(&redis.Options{Addr: "redis.internal:6379"})
	defer rc.Close()
	st, err := redisstore.New(rc, redisstore.WithMaxEntriesPerIdentity(10_000))
	if err != nil {
		log.Fatal(err)
	}
	_ = st
}
