package fallback

import (
	"testing"
	"time"
)

func TestCacheBounds(t *testing.T) {
	now := time.Unix(0, 0)
	c := newCache(2, time.Minute)
	c.put("a", []byte("1"), now)
	c.put("b", []byte("2"), now)
	if _, ok := c.get("a", now); !ok { // a is now the most recently used
		t.Fatal("a missing")
	}
	c.put("c", []byte("3"), now) // evicts b
	if _, ok := c.get("b", now); ok {
		t.Fatal("b was not evicted")
	}
	if c.len() != 2 {
		t.Fatalf("len %d", c.len())
	}
	c.put("a", []byte("4"), now.Add(30*time.Second))
	if v, ok := c.get("a", now.Add(time.Minute)); !ok || string(v) != "4" {
		t.Fatalf("a = %q, %v", v, ok)
	}
	if _, ok := c.get("c", now.Add(time.Minute+time.Nanosecond)); ok {
		t.Fatal("c is older than the max age")
	}
	if c.len() != 1 {
		t.Fatalf("an expired entry was kept: len %d", c.len())
	}
}
