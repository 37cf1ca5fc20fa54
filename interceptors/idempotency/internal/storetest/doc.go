// Package storetest checks that an idempotency.Store keeps the contract the
// server interceptor relies on.
package storetest
