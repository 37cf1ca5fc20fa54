// Package observe is how failsoft's interceptors report their decisions:
// attempts, backoffs, hedges, breaker transitions and rejections, budget
// exhaustion, throttling, fallbacks, deadline fail-fast and idempotency
// keys. Each layer calls an Observer with an Event; telemetry, logging or a
// test implements Observer and hears everything without reaching into any
// layer. A nil Observer is valid and costs nothing.
package observe
