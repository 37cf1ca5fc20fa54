package policy

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	failsoftv1 "github.com/failsoft/failsoft/proto/failsoft/v1"
)

// TestRecentSlotsShared: methods that share a slot of the recent cache
// each get their own policy, also when resolved concurrently.
func TestRecentSlotsShared(t *testing.T) {
	var r0 Resolver
	bySlot := map[int][]string{}
	var shared []string
	for i := 0; len(shared) == 0; i++ {
		m := fmt.Sprintf("/test.v1.S/M%d", i)
		s := r0.slotIndex(m)
		bySlot[s] = append(bySlot[s], m)
		if len(bySlot[s]) == 3 {
			shared = bySlot[s]
		}
	}
	var opts []Option
	for i, m := range shared {
		opts = append(opts, WithMethod(m, &failsoftv1.MethodPolicy{Timeout: durationpb.New(time.Duration(i+1) * time.Second)}))
	}
	r, err := New(opts...)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 100 {
				for i, m := range shared {
					p, err := r.Resolve(m)
					if err != nil {
						t.Error(err)
						return
					}
					if want := time.Duration(i+1) * time.Second; p.Timeout != want || p.Method != m {
						t.Errorf("%s: timeout %v of %s, want %v", m, p.Timeout, p.Method, want)
						return
					}
				}
			}
		})
	}
	wg.Wait()
}
