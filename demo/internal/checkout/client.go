package checkout

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/failsoft/failsoft/interceptors/fallback"
	"github.com/failsoft/failsoft/interceptors/logging"
	"github.com/failsoft/failsoft/interceptors/observe"
	"github.com/failsoft/failsoft/interceptors/outcome"
	"github.com/failsoft/failsoft/interceptors/pending"
	"github.com/failsoft/failsoft/interceptors/pending/boltstore"
	"github.com/failsoft/failsoft/interceptors/policy"
	paymentsv1 "github.com/failsoft/failsoft/proto/payments/v1"
)

// Config configures a Client.
type Config struct {
	// Target is the payment server's address.
	Target string
	// OutboxPath is the bbolt file of the pending charges.
	OutboxPath string
	// RunID prefixes the order IDs of this run.
	RunID string
	// Chain configures the interceptors.
	Chain ChainConfig
	// DrainEvery is how often pending charges are sent again; 0 for
	// 250 ms.
	DrainEvery time.Duration
	// Log receives failures with their trace IDs, and failsoft's
	// decisions (breaker opened, retries given up, ...) through the
	// logging observer; nil discards.
	Log *slog.Logger
	// DialOptions are added after the pending queue and the chain, so
	// that their interceptors run innermost and meet every attempt: a
	// client-side chaos injector, for example.
	DialOptions []grpc.DialOption
}

// StoryChain is the checkout story's breaker: 5 failures within 30 s
// open it for openFor.
func StoryChain(openFor time.Duration, seed uint64) ChainConfig {
	return ChainConfig{BreakerFailures: 5, BreakerWindow: 30 * time.Second, BreakerOpenFor: openFor, Seed: seed}
}

// Client is a checkout client.
type Client struct {
	cfg   Config
	conn  *grpc.ClientConn
	api   paymentsv1.PaymentServiceClient
	chain *Chain
	queue *pending.Queue
	store *boltstore.Store
	stats *Stats
	log   *slog.Logger

	mu      sync.Mutex
	orders  map[string]*order // by order ID
	breaker atomic.Pointer[string]
	settled []string // payment IDs, for reads and refunds
	later   []string // payment IDs of charges settled by the drainer
	seq     int
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

// New opens the store of pending charges and dials the server through the
// pending queue and the chain. Charges left pending by an earlier run are
// expected to settle in this one.
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
	logObs, err := logging.New(cfg.Log)
	if err != nil {
		return nil, err
	}
	cfg.Chain.Observer = observe.Multi(c.stats, logObs)
	cfg.Chain.OnBreaker = func(_, _, to string) { c.breaker.Store(&to) }
	chain, err := NewChain(cfg.Chain)
	if err != nil {
		return nil, err
	}
	c.chain = chain
	store, err := boltstore.Open(cfg.OutboxPath)
	if err != nil {
		return nil, err
	}
	c.store = store
	qopts := []pending.Option{
		pending.ForMethods(methodCharge),
		// A charge that failed in any way that may have committed is
		// pending: its key makes sending it again safe.
		pending.WithCodes(codes.Unavailable, codes.ResourceExhausted, codes.DeadlineExceeded, codes.Aborted, codes.Internal, codes.Unknown),
		pending.WithBackoff(cfg.DrainEvery, 8*cfg.DrainEvery),
		pending.WithDrain(cfg.DrainEvery, 50, 30*time.Second),
		pending.WithLimits(1000, time.Hour),
		pending.OnSettled(c.settledLater),
		pending.OnDead(c.died),
	}
	if tp := cfg.Chain.TracerProvider; tp != nil {
		qopts = append(qopts, pending.WithTracerProvider(tp))
	}
	if mp := cfg.Chain.MeterProvider; mp != nil {
		qopts = append(qopts, pending.WithMeterProvider(mp))
	}
	q, err := pending.New(store, qopts...)
	if err != nil {
		store.Close()
		return nil, err
	}
	c.queue = q
	opts := append([]grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithChainUnaryInterceptor(q.UnaryClientInterceptor())}, chain.DialOptions()...)
	opts = append(opts, cfg.DialOptions...)
	conn, err := grpc.NewClient(cfg.Target, opts...)
	if err != nil {
		q.Close()
		store.Close()
		return nil, err
	}
	c.conn, c.api = conn, paymentsv1.NewPaymentServiceClient(conn)
	if n := c.Pending(); n > 0 {
		c.log.Info("payments pending from an earlier run", "pending", n)
	}
	return c, nil
}

// Close closes the connection and the store of pending charges.
func (c *Client) Close() error {
	err := c.conn.Close()
	if cerr := c.queue.Close(); err == nil {
		err = cerr
	}
	if cerr := c.store.Close(); err == nil {
		err = cerr
	}
	return err
}

// Stats returns the client's counters.
func (c *Client) Stats() *Stats { return c.stats }

// Pending returns the number of charges waiting to be sent again.
func (c *Client) Pending() int {
	st, err := c.store.Stats(context.Background())
	if err != nil {
		c.log.Error("reading the pending store failed", "err", err)
	}
	return st.Depth
}

// DeadLetters returns the pending charges the service refused for good.
func (c *Client) DeadLetters() ([]pending.Dead, error) {
	return c.store.DeadLetters(context.Background(), 0)
}

// SettledLater returns the payment IDs of the pending charges the drainer
// settled in this run.
func (c *Client) SettledLater() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.later)
}

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
	res := c.settle(ctx, "Charge", o, []charge{{key: key, orderID: orderID, amount: amountMinor}}, resp.GetPayment(), err, tid)[0]
	c.stats.charge(res.State, time.Since(start))
	return res
}

type charge struct {
	key, orderID string
	amount       int64
}

// settle records the outcome of charges sent in one call.
func (c *Client) settle(ctx context.Context, method string, o *order, charges []charge, p *paymentsv1.Payment, err error, tid string) []Result {
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
		var deferred *pending.Deferred
		var notQueued *pending.NotQueuedError
		switch {
		case err == nil:
			r.State, r.PaymentID, r.Message = StateSettled, p.GetPaymentId(), "paid"
		case errors.As(err, &deferred):
			// The pending queue took it: the drainer sends it again.
			c.stats.Fallback(method + ":pending")
			r.State, r.Message = StatePending, PendingMessage
			c.log.Warn("charge pending", "order", ch.orderID, "trace_id", tid, "err", err)
		case errors.As(err, &notQueued):
			// Not even the queue took it: the customer must be told.
			r.State, r.Message = StateDeclined, "payment failed, please try again"
			c.log.Error("charge could not be queued", "order", ch.orderID, "trace_id", tid, "err", err)
		case definitive(err):
			r.State, r.Message = StateDeclined, "payment declined: "+status.Convert(err).Message()
			c.log.Error("charge declined", "order", ch.orderID, "trace_id", tid, "err", err)
		default:
			// A batch item, or a failure the queue leaves alone (the
			// caller's own cancellation): it may have committed, so it is
			// queued under the key the server recorded it with.
			qerr := c.queue.Enqueue(ctx, methodCharge, ch.key,
				&paymentsv1.ChargeRequest{OrderId: ch.orderID, AmountMinor: ch.amount, Currency: "EUR"}, err)
			if !errors.As(qerr, &deferred) {
				r.State, r.Message = StateDeclined, "payment failed, please try again"
				c.log.Error("charge could not be queued", "order", ch.orderID, "trace_id", tid, "err", qerr)
				break
			}
			c.stats.Fallback(method + ":pending")
			r.State, r.Message = StatePending, PendingMessage
			c.log.Warn("charge pending", "order", ch.orderID, "trace_id", tid, "err", err)
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
			out[i] = c.settle(ctx, "BatchCharge", o, charges[i:i+1], payments[i], nil, tid)[0]
		}
	} else {
		out = c.settle(context.WithoutCancel(ctx), "BatchCharge", nil, charges, nil, err, tid)
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
		c.stats.Failed.Add(1)
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
		c.stats.Failed.Add(1)
		c.log.Warn("refund failed", "payment", id, "trace_id", tid, "err", err)
	}
	return err
}

// DrainOnce sends due pending charges again, through the chain, with
// their own idempotency keys, and returns how many settled.
func (c *Client) DrainOnce(ctx context.Context) (int, error) {
	r, err := c.queue.DrainOnce(ctx, c.conn)
	return r.Settled, err
}

// settledLater hears a pending charge the drainer settled.
func (c *Client) settledLater(_ context.Context, s pending.Settled) {
	var req paymentsv1.ChargeRequest
	if err := proto.Unmarshal(s.Request, &req); err != nil {
		c.log.Error("settled charge has a corrupt request", "key", s.Key, "err", err)
		return
	}
	id := s.Reply.(*paymentsv1.ChargeResponse).GetPayment().GetPaymentId()
	c.mu.Lock()
	o := c.orders[req.OrderId]
	if o == nil {
		o = &order{id: req.OrderId, key: s.Key}
		c.orders[req.OrderId] = o
	}
	c.later = append(c.later, id)
	c.mu.Unlock()
	c.setState(o, StateSettled, id)
	c.stats.count(settledLater)
	c.log.Info("pending payment settled, confirmation email sent", "order", req.OrderId, "payment", id, "attempts", s.Attempts+1)
}

// died hears a pending charge the service refused for good.
func (c *Client) died(_ context.Context, d pending.Dead) {
	var req paymentsv1.ChargeRequest
	_ = proto.Unmarshal(d.Request, &req)
	c.mu.Lock()
	o := c.orders[req.OrderId]
	c.mu.Unlock()
	if o != nil {
		c.setState(o, StateDeclined, "")
	}
	c.stats.count("dead")
	c.log.Error("pending payment failed for good, customer informed", "order", req.OrderId, "reason", d.Reason)
}

// settledLater counts charges settled by the drainer.
const settledLater = "settled-later"

// RunDrainer sends pending charges again every DrainEvery until ctx is
// done.
func (c *Client) RunDrainer(ctx context.Context) { _ = c.queue.Run(ctx, c.conn) }

// DrainAll drains until no charge is pending or ctx is done.
func (c *Client) DrainAll(ctx context.Context) error {
	for c.Pending() > 0 {
		if _, err := c.DrainOnce(ctx); err != nil && ctx.Err() == nil {
			c.log.Warn("drain pass failed", "err", err)
		}
		if c.Pending() == 0 {
			break
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("not drained: %d payments pending: %w", c.Pending(), ctx.Err())
		case <-time.After(c.cfg.DrainEvery):
		}
	}
	return nil
}

// Confirm watches the pending payments settled in this run over one
// WatchPayments stream and returns how many the service confirms.
func (c *Client) Confirm(ctx context.Context) (int, error) {
	settled := c.SettledLater()
	if len(settled) == 0 {
		return 0, nil
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
		for _, id := range settled {
			if err := stream.Send(&paymentsv1.WatchPaymentsRequest{PaymentId: id}); err != nil {
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
	StillPending int      // orders still pending
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
	return fmt.Sprintf("%s: %d of %d orders paid or pending are in the ledger; %d charged twice, %d paid but missing, %d charged although declined, %d still pending (%d ledger entries read)",
		verdict, r.Found, r.Expected, r.Duplicates, r.Lost, r.Unexpected, r.StillPending, r.Ledger)
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
	r := Reconciliation{Ledger: read, StillPending: c.Pending()}
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
