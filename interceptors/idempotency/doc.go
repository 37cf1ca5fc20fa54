// Package idempotency makes retries of calls with side effects safe: a
// client interceptor gives every logical call one idempotency key, which
// all its retries and hedges carry, and a server interceptor runs each key
// once and answers every repeat with the first outcome. A payment whose
// response was lost is retried and still charged once.
//
// # Which methods
//
// Both sides act only on methods whose policy requires a key (the proto
// option `(failsoft.v1.method) = {requires_idempotency_key: true}`, or
// policy.WithMethod in code), read through a policy.Resolver
// (policy.Default() unless WithResolver is given). Such a method is also
// the one the retry interceptor retries only when a key is attached. Other
// methods pass through untouched, at the cost of one cached policy lookup.
//
// # Client
//
// New returns the client Interceptor. For a method that requires a key it
// puts one in the request metadata entry policy.KeyMetadata
// ("idempotency-key"):
//
//   - a key already in the outgoing metadata (set by the application, or
//     by an outer copy of the interceptor), left as it is;
//   - or the caller's key, set with WithKey;
//   - or a new random UUID (NewKey).
//
// Keys are checked with ValidateKey (printable ASCII, 1 to 255 bytes, no
// leading or trailing space); an invalid key, or a WithKey key that
// differs from one already in the metadata, fails the call locally with
// INVALID_ARGUMENT, as an *outcome.Rejection, and nothing is sent.
//
// It must sit outside the retry and hedging interceptors, so that every
// attempt of a call reuses the key in its context, and each new call gets a
// new one:
//
//	grpc.WithChainUnaryInterceptor(
//		deadlines, idem.UnaryClientInterceptor(), retries, breaker, ...)
//
// Streams to such methods carry the key in their metadata the same way.
// Each attached key is reported as an observe.KeyAttached event whose
// Reason is KeyHash(key); the key itself only with WithRawKeysInEvents.
//
// # Server
//
// NewServer returns the Server, whose UnaryServerInterceptor deduplicates
// by (caller identity, method, key). The caller identity comes from an
// IdentityFunc (WithIdentity) and must survive restarts and new addresses:
//
//   - CertificateIdentity, the default: the verified mTLS client
//     certificate (its URI name, such as a SPIFFE ID, or its subject); a
//     request without one is refused with UNAUTHENTICATED;
//   - a function of the caller's credentials, such as the principal an
//     authentication interceptor (placed before this one) put in the
//     context;
//   - Unauthenticated, the explicit choice of a service that cannot tell
//     callers apart: one identity, one key space and one quota for all;
//   - PeerIdentity, the IP address, an explicit and weak choice.
//
// A stored outcome is replayed only to the identity that created it, and
// another identity's key answers a caller exactly as an unused key does.
//
// For a request with a key:
//
//   - no key, several, or an invalid one: INVALID_ARGUMENT;
//   - a new key: claimed atomically with a lease (WithLease, DefaultLease),
//     which the server extends while the handler runs; the handler runs,
//     and its outcome is stored for WithTTL (DefaultTTL, 24 h) or released
//     (the table below);
//   - a key with a stored outcome: that outcome, without running the
//     handler, with the response header "idempotency-replayed: true";
//   - a key whose first request is still running: the request waits for
//     that request's outcome, within its own deadline, and answers with it
//     (or runs, if the first released the key); beyond WithMaxWaiters
//     waiting requests, ABORTED, for the client to retry after a backoff
//     (with an ErrorInfo of reason ReasonInProgress and a RetryInfo);
//   - a key used before for a different request (FingerprintOf the method
//     and the deterministic encoding of the request differs):
//     FAILED_PRECONDITION, never the stored response;
//   - a new key when the store has no room (only claims in flight are in
//     the way): RESOURCE_EXHAUSTED with a RetryInfo delay, an ErrorInfo of
//     reason ReasonStoreFull and the grpc-retry-pushback-ms trailer.
//
// A handler calls Commit(ctx) right after its side effects commit. What
// happens to each outcome, and what a retry with the same key then does:
//
//	handler outcome                           stored?  a retry with the key
//	OK                                        stored   is answered from the store
//	a code in DefaultStoredCodes (final       stored   is answered from the store
//	business errors, INTERNAL, UNKNOWN)
//	any code after Commit                     stored   is answered from the store
//	another code (validation, auth,           released runs again
//	transient) before Commit
//	panic, or RecoveredPanic, before Commit   released runs again
//	panic after Commit                        stored   INTERNAL from the store
//	outcome the store could not take          in this  is answered from this
//	(store down when the handler finished)    server   server, which writes it again
//	process crashed while the handler ran     lease    runs again once the lease ends
//	outcome evicted from a full store         evicted  runs again (MemoryStats.Evictions)
//
// What remains possible: a handler that does its effect and then fails
// with a released code without calling Commit runs twice; an INTERNAL from
// a recovery interceptor that does not use RecoveredPanic is stored; an
// outcome the store could not take is known only to the server that ran
// it, so a retry reaching another replica after the lease runs again; a
// process that crashes after the effect runs it again after the lease.
//
// Stored outcomes are the response message (rebuilt on replay from the
// type registry, WithTypes) or the full status with its details, and the
// response header and trailer metadata the handler set (grpc.SetHeader,
// grpc.SendHeader, grpc.SetTrailer), which a replay sends again.
//
// # Stores
//
// Outcomes live in a Store. The default is a MemoryStore, bounded in
// entries and bytes, in total and per identity, which degrades fairly:
// a flood of new keys from one identity costs that identity's oldest
// stored outcomes (their repeats run again), not another identity's; a
// claim in flight is never evicted, and only when the room is all claims
// in flight is a new key answered RESOURCE_EXHAUSTED, until a claim ends.
// MemoryStore.Stats counts entries, evictions and refusals. Services with
// several replicas share redisstore.Store (Redis, SET NX with a lease).
// When the store cannot be reached the request fails with UNAVAILABLE,
// never running unguarded, unless WithFailOpen is given. Every failure of
// the store, and every outcome that could not be stored, is reported as an
// observe.KeyStoreError event saying where it happened (claim,
// claim_fail_open, complete, encode, extend, release; the telemetry
// package counts them in failsoft.server.idempotency.store_errors): with
// WithFailOpen, or with outcomes that stop being stored, deduplication
// would otherwise stop without a sign. KeyConflict events say why a
// request did not run: "joined" (it waits for a claim in flight),
// "in_flight" (ABORTED), "fingerprint", "full".
//
// # Streams
//
// The StreamServerInterceptor checks that a stream to a method requiring a
// key carries one valid key (INVALID_ARGUMENT otherwise), and does not
// deduplicate: a stream's outcome is a sequence of messages in both
// directions that cannot be stored and replayed faithfully. Streaming
// handlers find the key with IncomingKey and deduplicate in their own
// storage.
//
// # Cost
//
// Attaching a key costs one policy lookup, a random UUID (uuid.NewString,
// two allocations) and grpc's metadata.AppendToOutgoingContext. See the
// package benchmarks.
package idempotency
