package redisstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"github.com/failsoft/failsoft/interceptors/internal/option"
	"github.com/failsoft/failsoft/interceptors/pending"
)

// Group is the consumer group of the drainers.
const Group = "drainers"

// The keys of one queue, in the order every script gets them. They share
// one hash tag, so a queue lives on one Redis Cluster slot.
var keyNames = []string{
	"entries", // HASH key -> entry (immutable part, JSON)
	"state",   // HASH key -> attempts and last error (JSON)
	"delayed", // ZSET key by NotBefore: waiting for its time
	"stream",  // STREAM of due keys, read by the group
	"leases",  // ZSET key by lease end: claimed
	"msg",     // HASH key -> its stream message ID
	"enq",     // ZSET key by enqueue time
	"dead",    // HASH key -> dead entry (JSON)
	"died",    // ZSET key by death time
}

// Scores are Unix microseconds: exact in a double for the next century.
func score(t time.Time) int64 { return t.UnixMicro() }

// forget removes a waiting key from everything but the dead letters;
// shared by the scripts that end or move an entry.
const forget = `
local function forget(k, group, keep)
  local id = redis.call('HGET', KEYS[6], k)
  if id then
    redis.call('XACK', KEYS[4], group, id)
    redis.call('XDEL', KEYS[4], id)
    redis.call('HDEL', KEYS[6], k)
  end
  redis.call('ZREM', KEYS[5], k)
  redis.call('ZREM', KEYS[3], k)
  if not keep then
    redis.call('HDEL', KEYS[1], k)
    redis.call('HDEL', KEYS[2], k)
    redis.call('ZREM', KEYS[7], k)
  end
end
`

var (
	addScript = redis.NewScript(`
if redis.call('HEXISTS', KEYS[8], ARGV[1]) == 1 then return 'dead' end
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then return 'ok' end
if redis.call('HLEN', KEYS[1]) >= tonumber(ARGV[6]) then return 'full' end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
redis.call('ZADD', KEYS[3], ARGV[4], ARGV[1])
redis.call('ZADD', KEYS[7], ARGV[5], ARGV[1])
return 'ok'
`)
	// claim: due delayed keys go into the stream, in NotBefore order;
	// expired leases are taken over (XCLAIM) first, then new messages are
	// read for this consumer; each claimed key is leased until ARGV[2].
	claimScript = redis.NewScript(`
local now, leaseEnd, max, group, consumer = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4], ARGV[5]
if redis.call('EXISTS', KEYS[4]) == 0 then
  redis.call('XGROUP', 'CREATE', KEYS[4], group, '0', 'MKSTREAM')
end
local due = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now)
for _, k in ipairs(due) do
  local id = redis.call('XADD', KEYS[4], '*', 'k', k)
  redis.call('HSET', KEYS[6], k, id)
  redis.call('ZREM', KEYS[3], k)
end
local keys = {}
for _, k in ipairs(redis.call('ZRANGEBYSCORE', KEYS[5], '-inf', now, 'LIMIT', 0, max)) do
  local id = redis.call('HGET', KEYS[6], k)
  if id then redis.call('XCLAIM', KEYS[4], group, consumer, 0, id) end
  redis.call('ZADD', KEYS[5], leaseEnd, k)
  table.insert(keys, k)
end
if #keys < max then
  local r = redis.call('XREADGROUP', 'GROUP', group, consumer, 'COUNT', max - #keys, 'STREAMS', KEYS[4], '>')
  if r then
    for _, m in ipairs(r[1][2]) do
      local k = m[2][2]
      redis.call('ZADD', KEYS[5], leaseEnd, k)
      table.insert(keys, k)
    end
  end
end
local out = {}
for _, k in ipairs(keys) do
  local e = redis.call('HGET', KEYS[1], k)
  if e then
    table.insert(out, e)
    table.insert(out, redis.call('HGET', KEYS[2], k) or '')
  end
end
return out
`)
	rescheduleScript = redis.NewScript(forget + `
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return 0 end
forget(ARGV[1], ARGV[4], true)
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[3], ARGV[3], ARGV[1])
return 1
`)
	settleScript = redis.NewScript(forget + `
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return 0 end
forget(ARGV[1], ARGV[2], false)
return 1
`)
	buryScript = redis.NewScript(forget + `
forget(ARGV[1], ARGV[2], false)
redis.call('HSET', KEYS[8], ARGV[1], ARGV[3])
redis.call('ZADD', KEYS[9], ARGV[4], ARGV[1])
return 1
`)
	forgetDeadScript = redis.NewScript(`
redis.call('HDEL', KEYS[8], ARGV[1])
redis.call('ZREM', KEYS[9], ARGV[1])
return 1
`)
	deadScript = redis.NewScript(`
local stop = tonumber(ARGV[1]) - 1
local out = {}
for _, k in ipairs(redis.call('ZRANGE', KEYS[9], 0, stop)) do
  local d = redis.call('HGET', KEYS[8], k)
  if d then table.insert(out, d) end
end
return out
`)
	statsScript = redis.NewScript(`
local oldest = redis.call('ZRANGE', KEYS[7], 0, 0, 'WITHSCORES')
local o = ''
if #oldest == 2 then o = oldest[2] end
return {redis.call('HLEN', KEYS[1]), redis.call('HLEN', KEYS[8]), o}
`)
)

// Store is a pending.Store in Redis, shared by the drainers of several
// client replicas. Create it with New.
type Store struct {
	client   redis.Scripter
	keys     []string
	max      int
	consumer string
}

var _ pending.Store = (*Store)(nil)

// Option configures a Store.
type Option func(*Store) error

// WithQueue names the queue (default "default"); its keys are
// "failsoft:pending:{name}:..." so that a queue lives on one Redis Cluster
// slot.
func WithQueue(name string) Option {
	return func(s *Store) error {
		if name == "" || strings.ContainsAny(name, "{}") {
			return fmt.Errorf("redisstore.WithQueue(%q): want a non-empty name without braces", name)
		}
		s.keys = queueKeys(name)
		return nil
	}
}

// WithConsumer names this replica in the consumer group (default: a
// random name per Store). Give a restarted replica its old name to see
// its old claims as its own in XPENDING; they are taken over after their
// lease either way.
func WithConsumer(name string) Option {
	return func(s *Store) error {
		if name == "" {
			return errors.New("redisstore.WithConsumer: empty name")
		}
		s.consumer = name
		return nil
	}
}

// WithMaxEntries sets how many entries may wait in the queue, over all
// replicas; Add fails with pending.ErrFull beyond it. The default is
// 10,000.
func WithMaxEntries(n int) Option {
	return func(s *Store) error {
		if n < 1 {
			return fmt.Errorf("redisstore.WithMaxEntries(%d): want at least 1", n)
		}
		s.max = n
		return nil
	}
}

func queueKeys(name string) []string {
	keys := make([]string, len(keyNames))
	for i, k := range keyNames {
		keys[i] = "failsoft:pending:{" + name + "}:" + k
	}
	return keys
}

// New returns a Store using client, which may be a *redis.Client,
// *redis.ClusterClient, a failover client or any redis.UniversalClient.
// The store does not close the client.
func New(client redis.Scripter, opts ...Option) (*Store, error) {
	if client == nil {
		return nil, errors.New("redisstore.New: nil client")
	}
	s := &Store{client: client, keys: queueKeys("default"), max: 10_000, consumer: "drainer-" + uuid.NewString()}
	if err := option.Apply(s, opts...); err != nil {
		return nil, err
	}
	return s, nil
}

// Keys returns the Redis keys of the queue, for operators.
func (s *Store) Keys() []string { return append([]string(nil), s.keys...) }

// Consumer returns this store's name in the consumer group.
func (s *Store) Consumer() string { return s.consumer }

// state is the mutable part of an entry.
type state struct {
	Attempts  int    `json:"attempts,omitempty"`
	LastError string `json:"last_error,omitempty"`
}

func stateOf(e pending.Entry) (string, error) {
	b, err := json.Marshal(state{Attempts: e.Attempts, LastError: e.LastError})
	return string(b), err
}

// Add implements pending.Store.
func (s *Store) Add(ctx context.Context, e pending.Entry) error {
	body := e
	body.Attempts, body.LastError = 0, ""
	b, err := body.MarshalBinary()
	if err != nil {
		return err
	}
	st, err := stateOf(e)
	if err != nil {
		return err
	}
	r, err := addScript.Run(ctx, s.client, s.keys, e.Key, b, st, score(e.NotBefore), score(e.Enqueued), s.max).Text()
	switch {
	case err != nil:
		return fmt.Errorf("redisstore: add: %w", err)
	case r == "dead":
		return fmt.Errorf("%w: %q", pending.ErrDead, e.Key)
	case r == "full":
		return pending.FullError(s.max)
	}
	return nil
}

// Claim implements pending.Store.
func (s *Store) Claim(ctx context.Context, now time.Time, lease time.Duration, max int) ([]pending.Entry, error) {
	until := now.Add(lease)
	vals, err := claimScript.Run(ctx, s.client, s.keys, score(now), score(until), max, Group, s.consumer).StringSlice()
	if err != nil {
		return nil, fmt.Errorf("redisstore: claim: %w", err)
	}
	out := make([]pending.Entry, 0, len(vals)/2)
	for i := 0; i+1 < len(vals); i += 2 {
		var e pending.Entry
		if err := e.UnmarshalBinary([]byte(vals[i])); err != nil {
			return nil, fmt.Errorf("redisstore: claim: %w", err)
		}
		var st state
		if vals[i+1] != "" {
			if err := json.Unmarshal([]byte(vals[i+1]), &st); err != nil {
				return nil, fmt.Errorf("redisstore: claim: state of %q: %w", e.Key, err)
			}
		}
		e.Attempts, e.LastError, e.NotBefore = st.Attempts, st.LastError, until
		out = append(out, e)
	}
	return out, nil
}

// Reschedule implements pending.Store.
func (s *Store) Reschedule(ctx context.Context, e pending.Entry) error {
	st, err := stateOf(e)
	if err != nil {
		return err
	}
	if err := rescheduleScript.Run(ctx, s.client, s.keys, e.Key, st, score(e.NotBefore), Group).Err(); err != nil {
		return fmt.Errorf("redisstore: reschedule: %w", err)
	}
	return nil
}

// Settle implements pending.Store.
func (s *Store) Settle(ctx context.Context, key string) error {
	if err := settleScript.Run(ctx, s.client, s.keys, key, Group).Err(); err != nil {
		return fmt.Errorf("redisstore: settle: %w", err)
	}
	return nil
}

// Bury implements pending.Store.
func (s *Store) Bury(ctx context.Context, d pending.Dead) error {
	b, err := d.MarshalBinary()
	if err != nil {
		return err
	}
	if err := buryScript.Run(ctx, s.client, s.keys, d.Key, Group, b, score(d.Died)).Err(); err != nil {
		return fmt.Errorf("redisstore: bury: %w", err)
	}
	return nil
}

// DeadLetters implements pending.Store.
func (s *Store) DeadLetters(ctx context.Context, max int) ([]pending.Dead, error) {
	if max <= 0 {
		max = 0 // ZRANGE 0 -1: all
	}
	vals, err := deadScript.Run(ctx, s.client, s.keys, max).StringSlice()
	if err != nil {
		return nil, fmt.Errorf("redisstore: dead letters: %w", err)
	}
	out := make([]pending.Dead, len(vals))
	for i, v := range vals {
		if err := out[i].UnmarshalBinary([]byte(v)); err != nil {
			return nil, fmt.Errorf("redisstore: dead letters: %w", err)
		}
	}
	return out, nil
}

// Forget implements pending.Store.
func (s *Store) Forget(ctx context.Context, key string) error {
	if err := forgetDeadScript.Run(ctx, s.client, s.keys, key).Err(); err != nil {
		return fmt.Errorf("redisstore: forget: %w", err)
	}
	return nil
}

// Stats implements pending.Store.
func (s *Store) Stats(ctx context.Context) (pending.Stats, error) {
	vals, err := statsScript.Run(ctx, s.client, s.keys).Slice()
	if err != nil || len(vals) != 3 {
		return pending.Stats{}, fmt.Errorf("redisstore: stats: %v", err)
	}
	st := pending.Stats{Depth: int(vals[0].(int64)), Dead: int(vals[1].(int64))}
	if o, _ := vals[2].(string); o != "" {
		var us int64
		if _, err := fmt.Sscan(o, &us); err != nil {
			return st, fmt.Errorf("redisstore: stats: oldest %q: %w", o, err)
		}
		st.Oldest = time.UnixMicro(us)
	}
	return st, nil
}
