// Package demo is failsoft's demo: a checkout (demo/client) paying through
// the failsoft client suite against a flaky payment service (demo/server),
// with the code they share under demo/internal and `make demo` to run it
// (see README.md here). This package holds no code of its own, only the
// demo scenario in small as a test: seeded chaos against a real server on
// 127.0.0.1, a client restart with payments still pending and a
// server restart mid-run, after which the ledger must hold every payment
// once.
package demo
