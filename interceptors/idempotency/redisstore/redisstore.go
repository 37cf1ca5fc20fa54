package redisstore

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc/codes"

	"github.com/failsoft/failsoft/interceptors/idempotency"
)

// DefaultPrefix starts the name of every key the store writes.
const DefaultPrefix = "failsoft:idem:"

// Value layout: one state byte, the 32-byte fingerprint, then for a
// pending entry the claim token, for a done entry the encoded outcome.
const (
	statePending = 'p'
	stateDone    = 'd'
	headerLen    = 1 + len(idempotency.Fingerprint{})
)

// Every script takes KEYS[1], the entry, and, when the store bounds an
// identity's entries, the two indexes of the identity's entries by expiry,
// KEYS[2] for claims in flight and KEYS[3] for stored outcomes, all in the
// identity's Cluster slot. An index member is the entry's key name. Without
// a bound the scripts get KEYS[1] only, and keep no index.
// Index scores are expiries in milliseconds with microsecond fractions,
// so that entries written one after the other keep their order; the
// server's clock is read only when an index is written.
const indexes = `
local indexed = #KEYS == 3
local now
local function at(ms)
  if not now then
    local t = redis.call('TIME')
    now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
  end
  return string.format('%.3f', now + tonumber(ms))
end
`

var (
	// claimScript: ARGV[1] value, ARGV[2] lease ms, ARGV[3] the identity's
	// bound (0: none). Returns 1 (claimed), 0 (full) or the entry's value.
	claimScript = redis.NewScript(indexes + `
local v = redis.call('GET', KEYS[1])
if v then
  return v
end
if indexed then
  local max = tonumber(ARGV[3])
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', at(0))
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', at(0))
  local n = redis.call('ZCARD', KEYS[2]) + redis.call('ZCARD', KEYS[3])
  if n >= max then
    local oldest = redis.call('ZRANGE', KEYS[3], 0, n - max)
    if #oldest <= n - max then
      return 0
    end
    for _, k in ipairs(oldest) do
      redis.call('DEL', k)
      redis.call('ZREM', KEYS[3], k)
    end
  end
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
if indexed then
  redis.call('ZADD', KEYS[2], at(ARGV[2]), KEYS[1])
  redis.call('PEXPIRE', KEYS[2], ARGV[2])
end
return 1
`)
	// completeScript: ARGV[1] token, ARGV[2] value, ARGV[3] TTL ms.
	completeScript = redis.NewScript(indexes + `
local v = redis.call('GET', KEYS[1])
if v == false or (string.sub(v, 1, 1) == 'p' and string.sub(v, 34) == ARGV[1]) then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  if indexed then
    redis.call('ZREM', KEYS[2], KEYS[1])
    redis.call('ZADD', KEYS[3], at(ARGV[3]), KEYS[1])
    redis.call('PEXPIRE', KEYS[3], ARGV[3])
  end
  return 1
end
return 0
`)
	// extendScript: ARGV[1] token, ARGV[2] lease ms.
	extendScript = redis.NewScript(indexes + `
local v = redis.call('GET', KEYS[1])
if v and string.sub(v, 1, 1) == 'p' and string.sub(v, 34) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  if indexed then
    redis.call('ZADD', KEYS[2], at(ARGV[2]), KEYS[1])
    redis.call('PEXPIRE', KEYS[2], ARGV[2])
  end
  return 1
end
return 0
`)
	// releaseScript: ARGV[1] token.
	releaseScript = redis.NewScript(indexes + `
local v = redis.call('GET', KEYS[1])
if v and string.sub(v, 1, 1) == 'p' and string.sub(v, 34) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  if indexed then
    redis.call('ZREM', KEYS[2], KEYS[1])
  end
end
return 0
`)
)

// DefaultMaxEntriesPerIdentity bounds the entries of one identity: claims
// in flight and stored outcomes.
const DefaultMaxEntriesPerIdentity = 100_000

// Store is an idempotency.Store in Redis. It is safe for concurrent use.
type Store struct {
	client      redis.Scripter
	prefix      string
	maxPerIdent int
}

var _ idempotency.Store = (*Store)(nil)

// Option configures a Store.
type Option func(*Store) error

// WithPrefix sets the start of every key name (DefaultPrefix), to share a
// Redis database between services.
func WithPrefix(p string) Option {
	return func(s *Store) error {
		if p == "" {
			return errors.New("redisstore.WithPrefix: empty prefix")
		}
		s.prefix = p
		return nil
	}
}

// WithMaxEntriesPerIdentity bounds the entries one identity holds
// (DefaultMaxEntriesPerIdentity): at the bound, a new claim evicts the
// identity's stored outcomes that expire first, and is refused
// (idempotency.ErrFull) when the bound is all claims in flight. 0 sets no
// bound, and keeps no index of an identity's entries.
func WithMaxEntriesPerIdentity(n int) Option {
	return func(s *Store) error {
		if n < 0 {
			return fmt.Errorf("redisstore.WithMaxEntriesPerIdentity(%d): must not be negative", n)
		}
		s.maxPerIdent = n
		return nil
	}
}

// New returns a Store using client, which may be a *redis.Client,
// *redis.ClusterClient, a failover client or any redis.UniversalClient.
// The store does not close the client.
func New(client redis.Scripter, opts ...Option) (*Store, error) {
	if client == nil {
		return nil, errors.New("redisstore.New: nil client")
	}
	s := &Store{client: client, prefix: DefaultPrefix, maxPerIdent: DefaultMaxEntriesPerIdentity}
	for _, o := range opts {
		if o == nil {
			continue
		}
		if err := o(s); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// RedisKey returns the name of the Redis key that holds k: the prefix, a
// hash of the identity as the Cluster hash tag (so that an identity's
// entries and their indexes share a slot), and a hash of the whole key.
func (s *Store) RedisKey(k idempotency.Key) string {
	return s.keys(k)[0]
}

// keys returns the entry's key name and, with a bound, its identity's two
// index names.
func (s *Store) keys(k idempotency.Key) []string {
	h := sha256.New()
	var n [binary.MaxVarintLen64]byte
	write := func(part string) {
		h.Write(n[:binary.PutUvarint(n[:], uint64(len(part)))])
		h.Write([]byte(part))
	}
	write(k.Identity)
	tag := s.prefix + "{" + hex.EncodeToString(h.Sum(nil)[:12]) + "}"
	write(k.Method)
	write(k.Key)
	entry := tag + hex.EncodeToString(h.Sum(nil))
	if s.maxPerIdent == 0 {
		return []string{entry}
	}
	return []string{entry, tag + "pending", tag + "done"}
}

// millis converts d to whole milliseconds for PX, rounding up so that a
// lease or TTL is never shorter than asked.
func millis(d time.Duration) int64 {
	ms := int64((d + time.Millisecond - 1) / time.Millisecond)
	return max(ms, 1)
}

// Claim implements idempotency.Store.
func (s *Store) Claim(ctx context.Context, k idempotency.Key, fp idempotency.Fingerprint, lease time.Duration) (idempotency.Claim, error) {
	token := uuid.NewString()
	v := make([]byte, 0, headerLen+len(token))
	v = append(v, statePending)
	v = append(v, fp[:]...)
	v = append(v, token...)
	res, err := claimScript.Run(ctx, s.client, s.keys(k), v, millis(lease), s.maxPerIdent).Result()
	if err != nil {
		if errors.Is(err, redis.Nil) {
			// Cannot happen (the script runs atomically), but if it did the
			// key is gone and the caller may simply retry.
			return idempotency.Claim{}, errors.New("redisstore: key vanished during claim")
		}
		return idempotency.Claim{}, fmt.Errorf("redisstore: claim: %w", err)
	}
	switch r := res.(type) {
	case int64:
		if r == 0 {
			return idempotency.Claim{}, idempotency.ErrFull
		}
		return idempotency.Claim{State: idempotency.Claimed, Token: token}, nil
	case string:
		return decode(r)
	}
	return idempotency.Claim{}, fmt.Errorf("redisstore: claim: unexpected reply %T", res)
}

// Complete implements idempotency.Store.
func (s *Store) Complete(ctx context.Context, k idempotency.Key, token string, fp idempotency.Fingerprint, o *idempotency.Outcome, ttl time.Duration) error {
	ok, err := completeScript.Run(ctx, s.client, s.keys(k), token, encodeDone(fp, o), millis(ttl)).Int64()
	if err != nil {
		return fmt.Errorf("redisstore: complete: %w", err)
	}
	if ok != 1 {
		return idempotency.ErrLeaseLost
	}
	return nil
}

// Extend implements idempotency.Store.
func (s *Store) Extend(ctx context.Context, k idempotency.Key, token string, lease time.Duration) error {
	ok, err := extendScript.Run(ctx, s.client, s.keys(k), token, millis(lease)).Int64()
	if err != nil {
		return fmt.Errorf("redisstore: extend: %w", err)
	}
	if ok != 1 {
		return idempotency.ErrLeaseLost
	}
	return nil
}

// Release implements idempotency.Store.
func (s *Store) Release(ctx context.Context, k idempotency.Key, token string) error {
	if err := releaseScript.Run(ctx, s.client, s.keys(k), token).Err(); err != nil {
		return fmt.Errorf("redisstore: release: %w", err)
	}
	return nil
}

func encodeDone(fp idempotency.Fingerprint, o *idempotency.Outcome) []byte {
	b := make([]byte, 0, headerLen+6*binary.MaxVarintLen64+o.Size())
	b = append(b, stateDone)
	b = append(b, fp[:]...)
	b = binary.AppendUvarint(b, uint64(o.Code))
	for _, part := range [...][]byte{o.Status, []byte(o.ResponseType), o.Response, o.Header, o.Trailer} {
		b = binary.AppendUvarint(b, uint64(len(part)))
		b = append(b, part...)
	}
	return b
}

func decode(v string) (idempotency.Claim, error) {
	if len(v) < headerLen {
		return idempotency.Claim{}, fmt.Errorf("redisstore: stored value of %d bytes is too short", len(v))
	}
	var c idempotency.Claim
	copy(c.Fingerprint[:], v[1:headerLen])
	switch v[0] {
	case statePending:
		c.State = idempotency.InFlight
		return c, nil
	case stateDone:
		o, err := decodeOutcome([]byte(v[headerLen:]))
		if err != nil {
			return idempotency.Claim{}, err
		}
		c.State = idempotency.Done
		c.Outcome = o
		return c, nil
	}
	return idempotency.Claim{}, fmt.Errorf("redisstore: stored value has unknown state %q", v[0])
}

func decodeOutcome(b []byte) (*idempotency.Outcome, error) {
	code, n := binary.Uvarint(b)
	if n <= 0 || code > 1<<31 {
		return nil, errors.New("redisstore: stored outcome has a bad code")
	}
	b = b[n:]
	var parts [5][]byte
	for i := range parts {
		l, n := binary.Uvarint(b)
		if n <= 0 || l > uint64(len(b)-n) {
			return nil, errors.New("redisstore: stored outcome is truncated")
		}
		parts[i] = b[n : n+int(l) : n+int(l)]
		b = b[n+int(l):]
	}
	if len(b) != 0 {
		return nil, errors.New("redisstore: stored outcome has trailing bytes")
	}
	o := &idempotency.Outcome{Code: codes.Code(code), ResponseType: string(parts[1])}
	if len(parts[0]) > 0 {
		o.Status = parts[0]
	}
	if len(parts[2]) > 0 || o.Code == codes.OK {
		o.Response = parts[2]
	}
	if len(parts[3]) > 0 {
		o.Header = parts[3]
	}
	if len(parts[4]) > 0 {
		o.Trailer = parts[4]
	}
	return o, nil
}
