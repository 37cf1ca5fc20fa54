package retry

import (
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
)

// trailer collects one unary attempt's trailer for the pushback marking
// interceptor when no layer outside asked for it: opts are the call's
// options followed by a grpc.Trailer option that writes into md. Holders
// are pooled so that marking costs no allocation.
type trailer struct {
	md   metadata.MD
	opts []grpc.CallOption
}

var trailerPool = sync.Pool{New: func() any { return new(trailer) }}

// newTrailer returns a holder whose opts are opts and the trailer option.
func newTrailer(opts []grpc.CallOption) *trailer {
	t := trailerPool.Get().(*trailer)
	t.opts = append(append(t.opts[:0], opts...), grpc.Trailer(&t.md))
	return t
}

// release returns t to the pool, keeping none of the call's options alive.
func (t *trailer) release() {
	clear(t.opts)
	t.opts, t.md = t.opts[:0], nil
	trailerPool.Put(t)
}
