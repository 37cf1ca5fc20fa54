package checkout

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/failsoft/failsoft/interceptors/fallback"
	"github.com/failsoft/failsoft/interceptors/outcome"
	"github.com/failsoft/failsoft/interceptors/policy"
	paymentsv1 "github.com/failsoft/failsoft/proto/payments/v1"
)

// Config configures a Client.
type Config struct {
	// Target is the payment server's address.
	Target string
	// OutboxPath is the outbox's bbolt file.
	OutboxPath string
	// RunID prefixes the order IDs of this run.
	RunID string
	// Chain configures the interceptors.
	Chain ChainConfig
	// DrainEvery is how often the outbox is drained; 0 for 250 ms.
	DrainEvery time.Duration
	// Log receives failures with their trace IDs; nil discards.
	Log *slog.Logger
}

// StoryChain is the checkout story's breaker: 5 failures within 30 s
// open it for openFor.
func StoryChain(openFor time.Duration, seed uint64) ChainConfig {
	return ChainConfig{BreakerFailures: 5, BreakerWindow: 30 * time.Second, BreakerOpenFor: openFor, Seed: seed}
}

// Client is a checkout client.
type Client struct {
	cfg    Config
	conn   *grpc.ClientConn
	api    paymentsv1.PaymentServiceClient
	chain  *Chain
	outbox *Outbox
	stats  *Stats
	log    *slog.Logger

	mu      sync.Mutex
	orders  map[string]*order // by order ID
	breaker atomic.Pointer[string]
	probeAt atomic.Int64 // Unix ns when an open breaker probes; 0 when not open
	settled []string     // payment IDs, for reads and refunds
	seq     int
	drainMu sync.Mutex
}

// order is what the client believes about one order.
type order struct {
	id, key, state, paymentID string
}

// Charge states.
const (
	StateInflight = "inflight"
	StateSettled  = "settled"
	StatePending  = "pending"
	StateDeclined = "declined"
)

// New dials the server and opens the outbox. Entries left pending by an
// earlier run are expected to settle in this one.
func New(cfg Config) (*Client, error) {
	if cfg.DrainEvery <= 0 {
		cfg.DrainEvery = 250 * time.Millisecond
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	c := &Client{cfg: cfg, stats: NewStats(), log: cfg.Log, orders: map[string]*order{}}
	closed := "closed"
	c.breaker.Store(&closed)
	cfg.Chain.Observer = c.stats
	cfg.Chain.ChargeFallback = c.chargeFallback
	cfg.Chain.OnBreaker = func(_, _, to string, probeAt time.Time) {
		c.breaker.Store(&to)
		var at int64
		if !probeAt.IsZero() {
			at = probeAt.UnixNano()
		}
		c.probeAt.Store(at)
	}
	chain, err := NewChain(cfg.Chain)
	if err != nil {
		return nil, err
	}
	c.chain = chain
	ob, err := OpenOutbox(cfg.OutboxPath)
	if err != nil {
		return nil, err
	}
	c.outbox = ob
	opts := append([]grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}, chain.DialOptions()...)
	conn, err := grpc.NewClient(cfg.Target, opts...)
	if err != nil {
		ob.Close()
		return nil, err
	}
	c.conn, c.api = conn, paymentsv1.NewPaymentServiceClient(conn)
	pending, err := ob.Pending(0)
	if err != nil {
		c.Close()
		return nil, err
	}
	for _, e := range pending {
		c.orders[e.OrderID] = &order{id: e.OrderID, key: e.Key, state: StatePending}
	}
	if len(pending) > 0 {
		c.log.Info("outbox holds payments from an earlier run", "pending", len(pending))
	}
	return c, nil
}

// Close closes the connection and the outbox.
func (c *Client) Close() error {
	err := c.conn.Close()
	if cerr := c.outbox.Close(); err == nil {
		err = cerr
	}
	return err
}

// Stats returns the client's counters.
func (c *Client) Stats() *Stats { return c.stats }

// Outbox returns the client's outbox.
func (c *Client) Outbox() *Outbox { return c.outbox }

// BreakerState returns the breaker state of the payment server.
func (c *Client) BreakerState() string { return *c.breaker.Load() }

// NextOrder returns a new order ID of this run.
func (c *Client) NextOrder() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.seq++
	return fmt.Sprintf("%s-%06d", c.cfg.RunID, c.seq)
}

func (c *Client) track(id, key string) *order {
	c.mu.Lock()
	defer c.mu.Unlock()
	o := &order{id: id, key: key, state: StateInflight}
	c.orders[id] = o
	return o
}

func (c *Client) setState(o *order, state, paymentID string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	o.state = state
	if paymentID != "" {
		o.paymentID = paymentID
		c.settled = append(c.settled, paymentID)
	}
}

// Result is what the customer is told.
type Result struct {
	OrderID   string
	State     string // settled, pending or declined
	PaymentID string
	Message   string
	TraceID   string
	Err       error
}

// definitive reports whether err says for sure that nothing was charged
// and sending again cannot help. Everything else may have committed, so
// the charge stays pending until the service confirms it.
func definitive(err error) bool {
	if _, ok := outcome.AsRejection(err); ok {
		return false
	}
	switch outcome.Code(err) {
	case codes.InvalidArgument, codes.FailedPrecondition, codes.PermissionDenied, codes.Unauthenticated,
		codes.NotFound, codes.AlreadyExists, codes.OutOfRange, codes.Unimplemented:
		return true
	}
	return false
}

// appFallback names the fallback the checkout itself gives a charge that
// failed in a way the fallback layer leaves alone (ABORTED for a key in
// flight, for example): it may still have committed, so it is pending.
const appFallback = "pending (checkout)"

// chargeFallback is the fallback layer's answer to a charge that could not
// be confirmed: the charge goes into the outbox with its idempotency key,
// and the customer is told it is pending.
func (c *Client) chargeFallback(ctx context.Context, req *paymentsv1.ChargeRequest, cause error) (*paymentsv1.ChargeResponse, error) {
	key := firstMD(ctx, policy.KeyMetadata)
	if key == "" {
		return nil, fmt.Errorf("charge of %s has no idempotency key to queue it with", req.OrderId)
	}
	tid := traceIDOf(ctx)
	err := c.outbox.Put(Entry{Key: key, OrderID: req.OrderId, AmountMinor: req.AmountMinor, Currency: req.Currency,
		Reason: reasonOf(cause), TraceID: tid, QueuedAt: time.Now()})
	if err != nil {
		c.log.Error("outbox write failed", "order", req.OrderId, "trace_id", tid, "err", err)
		return nil, err
	}
	c.log.Warn("charge pending", "order", req.OrderId, "trace_id", tid, "err", cause)
	return &paymentsv1.ChargeResponse{Payment: &paymentsv1.Payment{
		OrderId: req.OrderId, AmountMinor: req.AmountMinor, Currency: req.Currency,
		Status: paymentsv1.PaymentStatus_PAYMENT_STATUS_PENDING, IdempotencyKey: key,
	}}, nil
}

func reasonOf(err error) string {
	if r, ok := outcome.AsRejection(err); ok {
		return r.Layer + " rejected"
	}
	return outcome.Code(err).String()
}

func firstMD(ctx context.Context, key string) string {
	if v := metadata.ValueFromOutgoingContext(ctx, key); len(v) > 0 {
		return v[0]
	}
	return ""
}

// PendingMessage is what a customer sees while their payment is pending.
const PendingMessage = "payment pending, we'll confirm by email"

// Checkout charges one order.
func (c *Client) Checkout(ctx context.Context, orderID string, amountMinor int64) Result {
	key := NewKey()
	o := c.track(orderID, key)
	c.stats.call("Charge")
	ctx, tid, end := c.chain.startTrace(ctx, "checkout")
	ctx = metadata.AppendToOutgoingContext(ctx, policy.KeyMetadata, key)
	start := time.Now()
	var lvl fallback.Level
	resp, err := c.api.Charge(ctx, &paymentsv1.ChargeRequest{OrderId: orderID, AmountMinor: amountMinor, Currency: "EUR"}, fallback.Report(&lvl))
	end(err)
	res := c.settle("Charge", o, []charge{{key: key, orderID: orderID, amount: amountMinor}}, resp.GetPayment(), err, tid)[0]
	c.stats.charge(res.State, time.Since(start))
	return res
}

type charge struct {
	key, orderID string
	amount       int64
}

// settle records the outcome of charges sent in one call.
func (c *Client) settle(method string, o *order, charges []charge, p *paymentsv1.Payment, err error, tid string) []Result {
	out := make([]Result, len(charges))
	orders := []*order{o}
	if o == nil {
		c.mu.Lock()
		orders = orders[:0]
		for _, ch := range charges {
			orders = append(orders, c.orders[ch.orderID])
		}
		c.mu.Unlock()
	}
	for i, ch := range charges {
		r := Result{OrderID: ch.orderID, TraceID: tid, Err: err}
		switch {
		case err == nil && p.GetStatus() == paymentsv1.PaymentStatus_PAYMENT_STATUS_PENDING:
			// The fallback layer queued it.
			r.State, r.Message = StatePending, PendingMessage
		case err == nil:
			r.State, r.PaymentID, r.Message = StateSettled, p.GetPaymentId(), "paid"
		case definitive(err):
			r.State, r.Message = StateDeclined, "payment declined: "+status.Convert(err).Message()
			c.log.Error("charge declined", "order", ch.orderID, "trace_id", tid, "err", err)
		default:
			level := appFallback
			qerr := c.outbox.Put(Entry{Key: ch.key, OrderID: ch.orderID, AmountMinor: ch.amount, Currency: "EUR",
				Reason: reasonOf(err), TraceID: tid, QueuedAt: time.Now()})
			if qerr != nil {
				// Not even the outbox took it: the customer must be told.
				r.State, r.Message = StateDeclined, "payment failed, please try again"
				c.log.Error("outbox write failed", "order", ch.orderID, "trace_id", tid, "err", qerr)
				break
			}
			c.stats.Fallback(method + ":" + level)
			r.State, r.Message = StatePending, PendingMessage
			c.log.Warn("charge pending", "order", ch.orderID, "trace_id", tid, "fallback", level, "err", err)
		}
		c.setState(orders[i], r.State, r.PaymentID)
		out[i] = r
	}
	return out
}

// BatchCheckout charges several orders in one client-streaming call. If it
// cannot be confirmed, each order is queued with the key the server
// recorded it under, "<call key>/<i>", so a batch that did commit is not
// charged again.
func (c *Client) BatchCheckout(ctx context.Context, amounts []int64) []Result {
	key := NewKey()
	charges := make([]charge, len(amounts))
	for i, a := range amounts {
		id := c.NextOrder()
		charges[i] = charge{key: fmt.Sprintf("%s/%d", key, i), orderID: id, amount: a}
		c.track(id, charges[i].key)
	}
	c.stats.call("BatchCharge")
	ctx, tid, end := c.chain.startTrace(ctx, "batch-checkout")
	ctx = metadata.AppendToOutgoingContext(ctx, policy.KeyMetadata, key)
	start := time.Now()
	payments, err := c.batch(ctx, charges)
	end(err)
	var out []Result
	if err == nil {
		out = make([]Result, len(charges))
		for i, ch := range charges {
			c.mu.Lock()
			o := c.orders[ch.orderID]
			c.mu.Unlock()
			out[i] = c.settle("BatchCharge", o, charges[i:i+1], payments[i], nil, tid)[0]
		}
	} else {
		out = c.settle("BatchCharge", nil, charges, nil, err, tid)
	}
	d := time.Since(start)
	for _, r := range out {
		c.stats.charge(r.State, d)
	}
	return out
}

func (c *Client) batch(ctx context.Context, charges []charge) ([]*paymentsv1.Payment, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := c.api.BatchCharge(ctx)
	if err != nil {
		return nil, err
	}
	for _, ch := range charges {
		err := stream.Send(&paymentsv1.BatchChargeRequest{Charge: &paymentsv1.ChargeRequest{OrderId: ch.orderID, AmountMinor: ch.amount, Currency: "EUR"}})
		if err == io.EOF {
			break // the status comes from CloseAndRecv
		}
		if err != nil {
			return nil, err
		}
	}
	resp, err := stream.CloseAndRecv()
	if err != nil {
		return nil, err
	}
	if len(resp.Payments) != len(charges) {
		return nil, status.Errorf(codes.Internal, "batch of %d answered with %d payments", len(charges), len(resp.Payments))
	}
	return resp.Payments, nil
}

// RandomSettled returns a settled payment ID of this run, picked by n.
func (c *Client) RandomSettled(n int) (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.settled) == 0 {
		return "", false
	}
	return c.settled[n%len(c.settled)], true
}

// Lookup reads a payment. When the service cannot answer, the fallback
// layer answers with the last good answer for the same payment, and cached
// reports true.
func (c *Client) Lookup(ctx context.Context, id string) (p *paymentsv1.Payment, cached bool, err error) {
	c.stats.call("GetPayment")
	ctx, tid, end := c.chain.startTrace(ctx, "lookup")
	start := time.Now()
	var lvl fallback.Level
	resp, err := c.api.GetPayment(ctx, &paymentsv1.GetPaymentRequest{PaymentId: id}, fallback.Report(&lvl))
	end(err)
	c.stats.read(time.Since(start))
	if err != nil {
		c.log.Warn("payment read failed", "payment", id, "trace_id", tid, "err", err)
		return nil, false, err
	}
	if lvl != fallback.None {
		c.log.Warn("payment read answered by fallback", "payment", id, "trace_id", tid, "level", lvl.String())
	}
	return resp.Payment, lvl != fallback.None, nil
}

// Refund refunds a payment.
func (c *Client) Refund(ctx context.Context, id string) error {
	c.stats.call("Refund")
	ctx, tid, end := c.chain.startTrace(ctx, "refund")
	_, err := c.api.Refund(ctx, &paymentsv1.RefundRequest{PaymentId: id})
	end(err)
	if err != nil {
		c.log.Warn("refund failed", "payment", id, "trace_id", tid, "err", err)
	}
	return err
}

// DrainOnce sends pending outbox entries again, oldest first, with their
// own idempotency keys, while the breaker lets calls through. It returns
// how many settled and stops at the first failure.
func (c *Client) DrainOnce(ctx context.Context, max int) (int, error) {
	c.drainMu.Lock()
	defer c.drainMu.Unlock()
	if at := c.probeAt.Load(); at > 0 && time.Now().UnixNano() < at {
		// The breaker is open and would answer at once: wait for its
		// probe time, when a drained charge can be the probe.
		return 0, nil
	}
	pending, err := c.outbox.Pending(max)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, e := range pending {
		if ctx.Err() != nil {
			return n, ctx.Err()
		}
		c.stats.call("Charge(outbox)")
		cctx, tid, end := c.chain.startTrace(ctx, "outbox-drain")
		cctx = metadata.AppendToOutgoingContext(cctx, policy.KeyMetadata, e.Key)
		var lvl fallback.Level
		resp, err := c.api.Charge(cctx, &paymentsv1.ChargeRequest{OrderId: e.OrderID, AmountMinor: e.AmountMinor, Currency: e.Currency}, fallback.Report(&lvl))
		end(err)
		if err == nil && lvl != fallback.None {
			// Still not confirmed: the fallback answered (and kept the
			// entry). Try again on the next pass.
			err = errors.New("still pending: " + lvl.String() + " fallback answered")
		}
		if err != nil {
			_ = c.outbox.Touch(e.Key)
			if definitive(err) {
				// Must not happen: the charge was valid when first sent.
				c.log.Error("outbox charge refused", "order", e.OrderID, "trace_id", tid, "err", err)
			} else {
				c.log.Warn("outbox charge still pending", "order", e.OrderID, "trace_id", tid, "err", err)
			}
			return n, err
		}
		if err := c.outbox.Settle(e.Key, resp.Payment.PaymentId, time.Now()); err != nil {
			return n, err
		}
		c.mu.Lock()
		o := c.orders[e.OrderID]
		if o == nil {
			o = &order{id: e.OrderID, key: e.Key}
			c.orders[e.OrderID] = o
		}
		c.mu.Unlock()
		c.setState(o, StateSettled, resp.Payment.PaymentId)
		c.stats.count("settled-from-outbox")
		c.log.Info("pending payment settled, confirmation email sent", "order", e.OrderID, "payment", resp.Payment.PaymentId, "trace_id", tid)
		n++
	}
	return n, nil
}

// RunDrainer drains the outbox every DrainEvery until ctx is done.
func (c *Client) RunDrainer(ctx context.Context) {
	t := time.NewTicker(c.cfg.DrainEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			_, _ = c.DrainOnce(ctx, 50)
		}
	}
}

// DrainAll drains until the outbox is empty or ctx is done.
func (c *Client) DrainAll(ctx context.Context) error {
	for c.outbox.Len() > 0 {
		if _, err := c.DrainOnce(ctx, 0); err != nil && ctx.Err() != nil {
			return fmt.Errorf("outbox not drained: %d pending: %w", c.outbox.Len(), ctx.Err())
		}
		if c.outbox.Len() == 0 {
			break
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("outbox not drained: %d pending: %w", c.outbox.Len(), ctx.Err())
		case <-time.After(c.cfg.DrainEvery):
		}
	}
	return nil
}

// Confirm watches the payments settled from the outbox over one
// WatchPayments stream and returns how many the service confirms.
func (c *Client) Confirm(ctx context.Context) (int, error) {
	settled, err := c.outbox.Settled()
	if err != nil || len(settled) == 0 {
		return 0, err
	}
	c.stats.call("WatchPayments")
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	stream, err := c.api.WatchPayments(ctx)
	if err != nil {
		return 0, err
	}
	errc := make(chan error, 1)
	go func() {
		for _, e := range settled {
			if err := stream.Send(&paymentsv1.WatchPaymentsRequest{PaymentId: e.PaymentID}); err != nil {
				errc <- err
				return
			}
		}
		errc <- nil
	}()
	confirmed := 0
	for range settled {
		resp, err := stream.Recv()
		if err != nil {
			return confirmed, err
		}
		switch resp.Payment.GetStatus() {
		case paymentsv1.PaymentStatus_PAYMENT_STATUS_SUCCEEDED, paymentsv1.PaymentStatus_PAYMENT_STATUS_REFUNDED:
			confirmed++
		}
	}
	if err := <-errc; err != nil {
		return confirmed, err
	}
	if err := stream.CloseSend(); err != nil {
		return confirmed, err
	}
	if _, err := stream.Recv(); err != io.EOF {
		return confirmed, fmt.Errorf("watch did not end cleanly: %v", err)
	}
	return confirmed, nil
}

// Reconciliation compares what the client believes with the ledger.
type Reconciliation struct {
	Expected     int      // orders believed settled or pending
	Found        int      // of those, present in the ledger
	Duplicates   int      // orders charged more than once
	Lost         int      // orders believed settled or pending but not charged
	Unexpected   int      // orders of this run charged although declined or unknown
	StillPending int      // orders still in the outbox
	Ledger       int      // ledger entries read
	Examples     []string // a few offending order IDs
}

// OK reports whether reconciliation passed.
func (r Reconciliation) OK() bool {
	return r.Duplicates == 0 && r.Lost == 0 && r.Unexpected == 0 && r.StillPending == 0
}

func (r Reconciliation) String() string {
	verdict := "OK"
	if !r.OK() {
		verdict = "FAILED"
	}
	return fmt.Sprintf("%s: %d expected, %d found, %d duplicates, %d lost, %d unexpected, %d still pending (ledger entries read: %d)",
		verdict, r.Expected, r.Found, r.Duplicates, r.Lost, r.Unexpected, r.StillPending, r.Ledger)
}

// Reconcile reads the whole ledger with ListPayments and compares it with
// every order this client knows about.
func (c *Client) Reconcile(ctx context.Context) (Reconciliation, error) {
	var byOrder map[string]int
	var read int
	var err error
	for try := 0; try < 5; try++ { // bounded: the stream is retried only before its first message
		if byOrder, read, err = c.list(ctx); err == nil || ctx.Err() != nil {
			break
		}
		c.log.Warn("listing payments failed, trying again", "err", err)
		select {
		case <-ctx.Done():
		case <-time.After(200 * time.Millisecond):
		}
	}
	if err != nil {
		return Reconciliation{}, fmt.Errorf("list payments: %w", err)
	}
	r := Reconciliation{Ledger: read, StillPending: c.outbox.Len()}
	bad := func(id string) {
		if len(r.Examples) < 5 {
			r.Examples = append(r.Examples, id)
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for id, o := range c.orders {
		n := byOrder[id]
		switch o.state {
		case StateSettled, StatePending:
			r.Expected++
			if n > 0 {
				r.Found++
			}
			if n == 0 && o.state == StateSettled {
				r.Lost++
				bad(id)
			}
			if n > 1 {
				r.Duplicates++
				bad(id)
			}
		default:
			if n > 0 {
				r.Unexpected++
				bad(id)
			}
		}
	}
	for id := range byOrder {
		if _, ok := c.orders[id]; !ok && len(id) > len(c.cfg.RunID) && id[:len(c.cfg.RunID)+1] == c.cfg.RunID+"-" {
			r.Unexpected++
			bad(id)
		}
	}
	return r, nil
}

func (c *Client) list(ctx context.Context) (map[string]int, int, error) {
	c.stats.call("ListPayments")
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := c.api.ListPayments(ctx, &paymentsv1.ListPaymentsRequest{})
	if err != nil {
		return nil, 0, err
	}
	byOrder := map[string]int{}
	n := 0
	for {
		resp, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return byOrder, n, nil
		}
		if err != nil {
			return nil, 0, err
		}
		byOrder[resp.Payment.OrderId]++
		n++
	}
}
