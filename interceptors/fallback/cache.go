package fallback

import (
	"container/list"
	"sync"
	"time"
)

// cache holds the last good response per key, bounded in entries (least
// recently used first out) and in age.
type cache struct {
	mu      sync.Mutex
	max     int
	maxAge  time.Duration
	entries map[string]*list.Element
	lru     list.List // front: most recently used
}

type cacheEntry struct {
	key    string
	value  []byte
	stored time.Time
}

func newCache(max int, maxAge time.Duration) *cache {
	return &cache{max: max, maxAge: maxAge, entries: map[string]*list.Element{}}
}

func (c *cache) put(key string, value []byte, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.entries[key]; ok {
		e := el.Value.(*cacheEntry)
		e.value, e.stored = value, now
		c.lru.MoveToFront(el)
		return
	}
	c.entries[key] = c.lru.PushFront(&cacheEntry{key: key, value: value, stored: now})
	for c.lru.Len() > c.max {
		el := c.lru.Back()
		c.lru.Remove(el)
		delete(c.entries, el.Value.(*cacheEntry).key)
	}
}

// get returns the value for key unless it is older than maxAge. The
// returned slice must not be modified.
func (c *cache) get(key string, now time.Time) ([]byte, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.entries[key]
	if !ok {
		return nil, false
	}
	e := el.Value.(*cacheEntry)
	if now.Sub(e.stored) > c.maxAge {
		c.lru.Remove(el)
		delete(c.entries, key)
		return nil, false
	}
	c.lru.MoveToFront(el)
	return e.value, true
}

func (c *cache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lru.Len()
}
