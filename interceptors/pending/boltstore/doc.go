// Package boltstore is the embedded pending.Store: one bbolt file, for
// one client process. Its entries survive the process: every change is one
// bbolt transaction, written to disk (fsync) before the call returns, so a
// process killed at any moment finds on restart every entry Add returned
// for, with at most the claim it was working on leased until the lease
// ends.
//
// It is a separate package so that users of package pending who do not
// use it do not link bbolt.
//
// Besides the entries (JSON, see pending.Entry.MarshalBinary) the file
// keeps an index by due time, so a claim reads only due entries, an index
// by enqueue time for the oldest entry's age, and the counts of waiting
// and dead entries, so a full store is found without counting.
package boltstore
