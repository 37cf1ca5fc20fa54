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
// Prefix + "{" + hash(caller) + "}" + hash(caller, method, key), so callers'
// identities and keys do not appear in Redis key names. Beside it, for the
// per-caller bound, two sorted sets per caller index the caller's claims in
// flight and stored outcomes by expiry; the hash tag keeps a caller's
// entries and indexes in one Redis Cluster slot. Without a bound
// (WithMaxEntriesPerIdentity(0)) there are no indexes, and each operation
// runs only its commands on the entry (GET and one write). Every operation
// is one Lua script, and so atomic on the server:
//
//   - Claim: if the key exists, its value is returned (in flight, or the
//     stored outcome). Otherwise, if the caller holds
//     WithMaxEntriesPerIdentity entries, its stored outcomes that expire
//     first are deleted to make room, or, when its entries are all claims
//     in flight, the claim is refused (idempotency.ErrFull, which the
//     server answers RESOURCE_EXHAUSTED); then SET key pending PX lease.
//   - Complete: if the key still holds this claim's token, or no longer
//     exists, SET key outcome PX ttl.
//   - Extend: if the key still holds this claim's token, PEXPIRE key lease.
//   - Release: if the key still holds this claim's token, DEL key.
//
// Leases and TTLs are Redis expiries, measured by the Redis server's clock:
// a claim left by a crashed handler disappears when its lease ends, and the
// key can be claimed again. Any Redis error (connection refused, timeout) is
// returned as is, and the server interceptor answers UNAVAILABLE unless it
// was configured to fail open.
//
// # A Redis that one caller cannot fill
//
// The per-caller bound keeps one caller from taking the whole database;
// its flood costs its own oldest outcomes. Give every replica the same
// bound: entries written by a store without one are in no index, and a
// store with one does not count them. Size Redis's maxmemory for the
// number of callers times the bound, and run it with
// maxmemory-policy noeviction: Redis's own eviction policies would delete
// claims in flight (volatile-ttl deletes the shortest-lived, which are the
// claims) and let their requests run twice, while noeviction makes a full
// Redis refuse writes, which the server answers UNAVAILABLE without
// running the request. Every caller's entries live on one Cluster node,
// so a very large caller loads that node.
//
// Works with a single Redis server, with Sentinel (redis.NewFailoverClient)
// and with Redis Cluster (redis.NewClusterClient; each operation touches
// one slot, and the tests run the store's contract on a three-master
// cluster). As with any
// asynchronously replicated Redis, a failover can lose the latest writes,
// and with them a claim or an outcome.
package redisstore
