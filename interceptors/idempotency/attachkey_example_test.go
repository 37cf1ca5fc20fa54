package idempotency_test

import (
	"context"
	"fmt"

	"google.golang.org/grpc/metadata"

	"github.com/failsoft/failsoft/interceptors/idempotency"
	"github.com/failsoft/failsoft/interceptors/policy"
)

// An interceptor of the application's that must know the key a call will
// carry attaches it first; the client interceptor then keeps that key.
func ExampleAttachKey() {
	ctx, key, err := idempotency.AttachKey(idempotency.WithKey(context.Background(), "order-2026-000042"))
	fmt.Println(key, err, metadata.ValueFromOutgoingContext(ctx, policy.KeyMetadata))

	twice := metadata.AppendToOutgoingContext(context.Background(), policy.KeyMetadata, "a", policy.KeyMetadata, "b")
	_, _, err = idempotency.AttachKey(twice)
	fmt.Println(err)
	// Output:
	// order-2026-000042 <nil> [order-2026-000042]
	// 2 idempotency-key entries in the outgoing metadata, want one
}
