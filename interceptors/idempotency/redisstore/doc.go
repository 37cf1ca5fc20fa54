// Package redisstore is an idempotency.Store in Redis, for services with
// several replicas: every replica sees every key, so a retry that lands on
// another replica is still answered from the first one's outcome.
//
// It is a separate package so that users of the idempotency package who do
// not use Redis do not link the Redis client.
//
// # How it works
//
// Each (caller, method, key) is one Redis string under
// Prefix + hex(SHA-256(caller, method, key)), so callers' identities and keys
// do not appear in Redis key names. Every operation is one Lua script, and
// so atomic on the server:
//
//   - Claim: SET key pending NX PX lease; if the key exists, its value is
//     returned (in flight, or the stored outcome).
//   - Complete: if the key still holds this claim's token, or no longer
//     exists, SET key outcome PX ttl.
//   - Release: if the key still holds this claim's token, DEL key.
//
// Leases and TTLs are Redis expiries, measured by the Redis server's clock:
// a claim left by a crashed handler disappears when its lease ends, and the
// key can be claimed again. Any Redis error (connection refused, timeout) is
// returned as is, and the server interceptor answers UNAVAILABLE unless it
// was configured to fail open.
//
// Works with a single Redis server, with Sentinel (redis.NewFailoverClient)
// and with Redis Cluster (redis.NewClusterClient; each operation touches
// one key, and the tests run the store's contract on a three-master
// cluster). As with any
// asynchronously replicated Redis, a failover can lose the latest writes,
// and with them a claim or an outcome.
package redisstore
