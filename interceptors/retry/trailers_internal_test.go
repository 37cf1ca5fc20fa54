package retry

import (
	"slices"
	"testing"

	"google.golang.org/grpc"

	"github.com/failsoft/failsoft/internal/chain"
)

// TestTrailersFill: a holder's options are always the call's followed by
// its trailer option, whichever calls it served before; it keeps what it
// built from the suite's shared options, and nothing of a caller's.
func TestTrailersFill(t *testing.T) {
	bare, _ := chain.Mark(nil)
	bareStatic, _ := chain.Mark([]grpc.CallOption{grpc.StaticMethod()})
	own := []grpc.CallOption{grpc.StaticMethod(), grpc.WaitForReady(true)}
	ownMarked, _ := chain.Mark(own)
	if !chain.Bare(bare) || !chain.Bare(bareStatic) || chain.Bare(ownMarked) || chain.Bare(nil) {
		t.Fatal("chain.Bare does not tell the suite's shared options from a caller's")
	}
	h := newTrailers()
	for i, opts := range [][]grpc.CallOption{
		bare, bare, bareStatic, bareStatic, ownMarked, bareStatic, nil, bare, ownMarked, ownMarked, bare,
	} {
		h.fill(opts)
		if want := append(slices.Clone(opts), h.one[0]); !slices.Equal(h.opts, want) {
			t.Fatalf("call %d: options %v, want %v", i, h.opts, want)
		}
		h.reset()
		if chain.Bare(opts) || len(opts) == 0 {
			continue
		}
		if slices.ContainsFunc(h.buf[:cap(h.buf)], func(o grpc.CallOption) bool { return o != nil }) {
			t.Fatalf("call %d: the holder keeps the caller's options after release", i)
		}
	}
}
