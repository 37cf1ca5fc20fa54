package idempotency_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/failsoft/failsoft/interceptors/clock"
	"github.com/failsoft/failsoft/interceptors/idempotency"
)

// modelEntry is what the model knows of a key: a claim in flight (token)
// or a stored outcome (response), until expires.
type modelEntry struct {
	token    string
	response string
	expires  time.Time
}

// TestMemoryModel runs random operations on a small MemoryStore against a
// model of its promises: a claim in flight is never lost or claimed twice
// while its lease lasts; a stored outcome is answered as stored or, once
// evicted, claimed anew, never mixed up; the bounds hold.
func TestMemoryModel(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		const maxEntries, perIdentity = 8, 5
		clk := clock.NewFake(time.Unix(1e9, 0))
		st, err := idempotency.NewMemoryStore(idempotency.MemoryConfig{MaxEntries: maxEntries, MaxEntriesPerIdentity: perIdentity, Clock: clk})
		if err != nil {
			t.Fatal(err)
		}
		ctx := context.Background()
		model := map[idempotency.Key]*modelEntry{}
		live := func(k idempotency.Key) *modelEntry {
			if e := model[k]; e != nil && clk.Now().Before(e.expires) {
				return e
			}
			delete(model, k)
			return nil
		}
		genKey := func(t *rapid.T) idempotency.Key {
			return idempotency.Key{
				Identity: rapid.SampledFrom([]string{"a", "b", "c"}).Draw(t, "identity"),
				Method:   "/s.S/M",
				Key:      fmt.Sprint(rapid.IntRange(0, 6).Draw(t, "key")),
			}
		}
		responses := 0
		t.Repeat(map[string]func(*rapid.T){
			"claim": func(t *rapid.T) {
				k := genKey(t)
				c, err := st.Claim(ctx, k, idempotency.Fingerprint{}, time.Minute)
				e := live(k)
				switch {
				case e != nil && e.token != "":
					if err != nil || c.State != idempotency.InFlight {
						t.Fatalf("claim in flight on %v answered %v, %v", k, c.State, err)
					}
				case e != nil && (err == nil && c.State == idempotency.Done):
					if string(c.Outcome.Response) != e.response {
						t.Fatalf("%v answered %q, stored %q", k, c.Outcome.Response, e.response)
					}
				case errors.Is(err, idempotency.ErrFull):
					delete(model, k) // an evicted outcome may be gone even when refused
				case err != nil || c.State != idempotency.Claimed:
					t.Fatalf("claim of %v (model %+v) answered %v, %v", k, e, c.State, err)
				default:
					model[k] = &modelEntry{token: c.Token, expires: clk.Now().Add(time.Minute)}
				}
			},
			"complete": func(t *rapid.T) {
				k := genKey(t)
				e := live(k)
				if e == nil || e.token == "" {
					return
				}
				responses++
				r := fmt.Sprint(responses)
				err := st.Complete(ctx, k, e.token, idempotency.Fingerprint{}, &idempotency.Outcome{Response: []byte(r)}, time.Hour)
				switch {
				case errors.Is(err, idempotency.ErrFull):
				case err != nil:
					t.Fatalf("complete of %v: %v", k, err)
				default:
					model[k] = &modelEntry{response: r, expires: clk.Now().Add(time.Hour)}
				}
			},
			"release": func(t *rapid.T) {
				k := genKey(t)
				if e := live(k); e != nil && e.token != "" {
					if err := st.Release(ctx, k, e.token); err != nil {
						t.Fatal(err)
					}
					delete(model, k)
				}
			},
			"extend": func(t *rapid.T) {
				k := genKey(t)
				if e := live(k); e != nil && e.token != "" {
					if err := st.Extend(ctx, k, e.token, time.Minute); err != nil {
						t.Fatalf("extend of %v: %v", k, err)
					}
					e.expires = clk.Now().Add(time.Minute)
				}
			},
			"advance": func(t *rapid.T) {
				clk.Advance(time.Duration(rapid.IntRange(1, 90).Draw(t, "seconds")) * time.Second)
			},
			"": func(t *rapid.T) {
				s := st.Stats()
				if s.Entries > maxEntries {
					t.Fatalf("%d entries, bound %d", s.Entries, maxEntries)
				}
				inFlight := 0
				for k := range model {
					if e := live(k); e != nil && e.token != "" {
						inFlight++
					}
				}
				if s.Entries < inFlight {
					t.Fatalf("%d entries held, %d claims in flight", s.Entries, inFlight)
				}
			},
		})
	})
}
