package pending

import (
	"context"
	"errors"
	"fmt"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/failsoft/failsoft/interceptors/outcome"
	"github.com/failsoft/failsoft/interceptors/policy"
)

// Report counts what one drain pass did.
type Report struct {
	Settled int // delivered and removed
	Retry   int // failed or not sent, rescheduled
	Dead    int // moved to the dead-letter list
}

// Run drains the store every drain interval (WithDrain) until ctx is done,
// sending entries through cc, the connection the calls were made on, so
// that redeliveries pass its breaker, throttle and budget like any call.
// It returns nil when ctx ends; store errors are retried on the next pass.
func (q *Queue) Run(ctx context.Context, cc grpc.ClientConnInterface) error {
	for {
		for {
			r, err := q.DrainOnce(ctx, cc)
			// A full batch that moved forward suggests more is due now.
			if err != nil || ctx.Err() != nil || r.Settled+r.Dead < q.cfg.batch {
				break
			}
		}
		t := q.cfg.clock.NewTimer(q.cfg.interval)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C():
		}
	}
}

// DrainOnce claims up to one batch of due entries and sends each again
// with its key. An entry settles on success and dies on a refusal for good
// (a code not in WithCodes: INVALID_ARGUMENT, FAILED_PRECONDITION for a
// reused key, ...) or past its limits; otherwise it waits its backoff.
// When the connection answers locally (breaker open, throttled) the pass
// stops: the rest of the batch waits as long as that entry does. A pass
// whose redeliveries took half the lease gives the rest of its batch back.
func (q *Queue) DrainOnce(ctx context.Context, cc grpc.ClientConnInterface) (Report, error) {
	var r Report
	now := q.cfg.clock.Now()
	entries, err := q.store.Claim(ctx, now, q.cfg.lease, q.cfg.batch)
	if err != nil {
		return r, fmt.Errorf("failsoft: pending: claim: %w", err)
	}
	claimed := now
	for i, e := range entries {
		if ctx.Err() != nil {
			return r, q.release(ctx, entries[i:], now, ctx.Err())
		}
		if now.Sub(claimed) > q.cfg.lease/2 {
			// Slow redeliveries used up half the lease: give the rest
			// back now rather than let another drainer take them over
			// while this one still sends them.
			r.Retry += len(entries) - i
			return r, q.release(ctx, entries[i:], now, nil)
		}
		if now.Sub(e.Enqueued) >= q.cfg.maxAge {
			if err := q.bury(ctx, e, fmt.Sprintf("older than %v after %d attempts; last error: %s", q.cfg.maxAge, e.Attempts, e.LastError)); err != nil {
				return r, err
			}
			r.Dead++
			continue
		}
		reply, err := q.send(ctx, cc, e)
		now = q.cfg.clock.Now()
		switch {
		case err == nil:
			if err := q.store.Settle(ctx, e.Key); err != nil {
				return r, fmt.Errorf("failsoft: pending: settle: %w", err)
			}
			q.tel.settled(ctx, e)
			if f := q.cfg.onSettled; f != nil {
				f(ctx, Settled{Entry: e, Reply: reply})
			}
			r.Settled++
		case isRejection(err) && q.cfg.codes[outcome.Code(err)]:
			// Not sent: the connection says the target cannot take it now.
			rej, _ := outcome.AsRejection(err)
			entries[i].LastError = err.Error()
			r.Retry += len(entries) - i
			return r, q.release(ctx, entries[i:], now.Add(max(rej.RetryAfter, q.cfg.backoff(1))), err)
		case q.cfg.codes[outcome.Code(err)] && !errors.Is(err, context.Canceled):
			e.Attempts++
			e.LastError = err.Error()
			if e.Attempts >= q.cfg.maxAttempts {
				if err := q.bury(ctx, e, fmt.Sprintf("gave up after %d attempts; last error: %s", e.Attempts, e.LastError)); err != nil {
					return r, err
				}
				r.Dead++
				continue
			}
			e.NotBefore = now.Add(q.cfg.backoff(e.Attempts))
			if err := q.store.Reschedule(ctx, e); err != nil {
				return r, fmt.Errorf("failsoft: pending: reschedule: %w", err)
			}
			r.Retry++
		case ctx.Err() != nil:
			return r, q.release(ctx, entries[i:], now, ctx.Err())
		default:
			if err := q.bury(ctx, e, refusal(err)); err != nil {
				return r, err
			}
			r.Dead++
		}
	}
	return r, nil
}

func isRejection(err error) bool {
	_, ok := outcome.AsRejection(err)
	return ok
}

// release gives claimed entries back, due at at, keeping their attempts.
func (q *Queue) release(ctx context.Context, entries []Entry, at time.Time, cause error) error {
	ctx = context.WithoutCancel(ctx)
	for _, e := range entries {
		e.NotBefore = at
		if err := q.store.Reschedule(ctx, e); err != nil {
			return fmt.Errorf("failsoft: pending: release: %w", err)
		}
	}
	if errors.Is(cause, context.Canceled) || errors.Is(cause, context.DeadlineExceeded) {
		return cause
	}
	return nil
}

func (q *Queue) bury(ctx context.Context, e Entry, reason string) error {
	d := Dead{Entry: e, Reason: reason, Died: q.cfg.clock.Now()}
	if err := q.store.Bury(ctx, d); err != nil {
		return fmt.Errorf("failsoft: pending: bury: %w", err)
	}
	q.tel.dead(ctx, e)
	if f := q.cfg.onDead; f != nil {
		f(ctx, d)
	}
	return nil
}

// send makes one redelivery of e through cc.
func (q *Queue) send(ctx context.Context, cc grpc.ClientConnInterface, e Entry) (proto.Message, error) {
	t, ok := q.methods[e.Method]
	if !ok {
		return nil, fmt.Errorf("failsoft: pending: %s is not opted in with ForMethods: %w", e.Method, errNotOptedIn)
	}
	req := t.req.New().Interface()
	if err := proto.Unmarshal(e.Request, req); err != nil {
		return nil, fmt.Errorf("failsoft: pending: stored request of %s: %w", e.Method, err)
	}
	reply := t.reply.New().Interface()
	ctx, end := q.tel.startRedelivery(ctx, e)
	md := metadata.MD{}
	for k, v := range e.Metadata {
		md[k] = append([]string(nil), v...)
	}
	md.Set(policy.KeyMetadata, e.Key)
	ctx = metadata.NewOutgoingContext(context.WithValue(ctx, redelivery{}, e.Key), md)
	err := cc.Invoke(ctx, e.Method, req, reply)
	end(err)
	return reply, err
}

// errNotOptedIn dies: the stored method is no longer configured.
var errNotOptedIn = errors.New("method not opted in")

// refusal is the dead-letter reason for err.
func refusal(err error) string {
	if st, ok := status.FromError(err); ok && st.Code() != codes.Unknown {
		return fmt.Sprintf("refused with %s: %s", st.Code(), st.Message())
	}
	return err.Error()
}
