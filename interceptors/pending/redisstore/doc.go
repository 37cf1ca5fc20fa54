// Package redisstore is a pending.Store in Redis, for client replicas that
// share one queue of pending calls: each entry is claimed by one replica
// at a time, and a crashed replica's claims are taken over by another when
// their lease ends.
//
// It is a separate package so that users of package pending who do not
// use Redis do not link the Redis client.
//
// # How it works
//
// A queue is a handful of keys with one hash tag (see WithQueue), changed
// only by Lua scripts, so every operation is atomic on the server and the
// queue lives on one Redis Cluster slot:
//
//   - entries (HASH) hold each entry, state (HASH) its attempts and last
//     error, enq (ZSET) its enqueue time, for the oldest entry's age;
//   - delayed (ZSET, by due time) holds entries waiting for their time;
//   - stream (a Redis Stream read by the consumer group Group) holds the
//     due ones: a claim first moves the due delayed entries into the
//     stream, then takes over expired leases with XCLAIM, then reads new
//     messages with XREADGROUP as this replica's consumer (WithConsumer);
//   - leases (ZSET, by lease end) says until when each claim holds;
//   - settling acknowledges (XACK) and deletes the message; rescheduling
//     does too, and puts the entry back into delayed;
//   - dead and died hold the dead letters.
//
// Leases and due times are measured by the times the drainer passes in
// (its clock), not by Redis's, so replicas' clocks must agree to within a
// small part of the lease. Scores are Unix microseconds.
//
// As with any asynchronously replicated Redis, a failover can lose the
// latest writes: an entry added just before it may be lost, a settled one
// may come back (and be answered by the server's idempotency record).
package redisstore
