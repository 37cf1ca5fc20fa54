// Package storetest is the contract every pending.Store passes: claims
// are leases, a key is waiting at most once, a full store says so, dead
// entries stay until forgotten. A store's tests call Run with a function
// that makes an empty store.
package storetest
