package ledger

import (
	"bytes"
	"errors"
	"fmt"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"

	paymentsv1 "github.com/failsoft/failsoft/proto/payments/v1"
)

var (
	bucketPayments = []byte("payments")  // payment ID -> Payment
	bucketKeys     = []byte("keys")      // idempotency key -> payment ID
	bucketBatch    = []byte("batchkeys") // keys of batch items -> empty
)

// Dedup says which repeated keys Charge answers with the recorded payment.
type Dedup uint8

const (
	// DedupNone records every charge, repeated key or not.
	DedupNone Dedup = iota
	// DedupAll answers every repeated key with the recorded payment.
	DedupAll
	// DedupBatchItems answers a key with the recorded payment only when a
	// batch recorded it: batches are streams, which an idempotency layer
	// in front cannot store and replay, so the ledger is their only
	// deduplication point, also when an item is later sent on its own.
	DedupBatchItems
)

// ErrNotFound is returned for an unknown payment ID.
var ErrNotFound = errors.New("payment not found")

// Ledger is a durable payment ledger. It is safe for concurrent use.
type Ledger struct {
	db *bolt.DB

	mu       sync.Mutex
	watchers map[chan *paymentsv1.Payment]struct{}
}

// Open opens (creating if needed) the ledger file at path. It fails after a
// second if another process holds the file.
func Open(path string) (*Ledger, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		return nil, fmt.Errorf("ledger: open %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketPayments, bucketKeys, bucketBatch} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("ledger: init %s: %w", path, err)
	}
	return &Ledger{db: db, watchers: map[chan *paymentsv1.Payment]struct{}{}}, nil
}

// Close closes the file.
func (l *Ledger) Close() error { return l.db.Close() }

// Charge is one charge to record.
type Charge struct {
	Key         string
	OrderID     string
	AmountMinor int64
	Currency    string
}

// Charge records the charges atomically: all of them or none. A charge
// whose key is already recorded is answered with the recorded payment, in
// the same transaction, as dedup says, and replayed reports true when
// every charge was: the ledger is then a durable deduplication point,
// independent of any idempotency layer in front of it. batch marks the
// charges as items of a batch.
func (l *Ledger) Charge(now time.Time, dedup Dedup, batch bool, charges ...Charge) (out []*paymentsv1.Payment, replayed bool, err error) {
	var fresh []*paymentsv1.Payment
	err = l.db.Update(func(tx *bolt.Tx) error {
		out, fresh = out[:0], fresh[:0]
		pays, keys, batchKeys := tx.Bucket(bucketPayments), tx.Bucket(bucketKeys), tx.Bucket(bucketBatch)
		for _, c := range charges {
			check := dedup == DedupAll || dedup == DedupBatchItems && batchKeys.Get([]byte(c.Key)) != nil
			if check && c.Key != "" {
				if id := keys.Get([]byte(c.Key)); id != nil {
					p, err := decode(pays.Get(id))
					if err != nil {
						return err
					}
					out = append(out, p)
					continue
				}
			}
			seq, err := pays.NextSequence()
			if err != nil {
				return err
			}
			p := &paymentsv1.Payment{
				PaymentId:       fmt.Sprintf("pay_%08d", seq),
				OrderId:         c.OrderID,
				AmountMinor:     c.AmountMinor,
				Currency:        c.Currency,
				Status:          paymentsv1.PaymentStatus_PAYMENT_STATUS_SUCCEEDED,
				IdempotencyKey:  c.Key,
				CreatedUnixNano: now.UnixNano(),
			}
			if err := put(pays, p); err != nil {
				return err
			}
			if c.Key != "" {
				if err := keys.Put([]byte(c.Key), []byte(p.PaymentId)); err != nil {
					return err
				}
				if batch {
					if err := batchKeys.Put([]byte(c.Key), nil); err != nil {
						return err
					}
				}
			}
			out = append(out, p)
			fresh = append(fresh, p)
		}
		return nil
	})
	if err != nil {
		return nil, false, fmt.Errorf("ledger: charge: %w", err)
	}
	for _, p := range fresh {
		l.notify(p)
	}
	return out, len(fresh) == 0 && len(out) > 0, nil
}

// Get returns a payment by ID.
func (l *Ledger) Get(id string) (*paymentsv1.Payment, error) {
	var p *paymentsv1.Payment
	err := l.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketPayments).Get([]byte(id))
		if v == nil {
			return ErrNotFound
		}
		var err error
		p, err = decode(v)
		return err
	})
	return p, err
}

// Refund marks a payment refunded. Refunding it again changes nothing.
func (l *Ledger) Refund(id string) (*paymentsv1.Payment, error) {
	var p *paymentsv1.Payment
	changed := false
	err := l.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketPayments)
		v := b.Get([]byte(id))
		if v == nil {
			return ErrNotFound
		}
		var err error
		if p, err = decode(v); err != nil {
			return err
		}
		if p.Status == paymentsv1.PaymentStatus_PAYMENT_STATUS_REFUNDED {
			return nil
		}
		p.Status = paymentsv1.PaymentStatus_PAYMENT_STATUS_REFUNDED
		changed = true
		return put(b, p)
	})
	if err != nil {
		return nil, err
	}
	if changed {
		l.notify(p)
	}
	return p, nil
}

// List calls fn for every payment whose order ID has the prefix, in the
// order they were recorded, until fn returns an error. Payments are read
// in one consistent snapshot.
func (l *Ledger) List(orderPrefix string, fn func(*paymentsv1.Payment) error) error {
	var all []*paymentsv1.Payment
	err := l.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketPayments).ForEach(func(_, v []byte) error {
			p, err := decode(v)
			if err != nil {
				return err
			}
			if len(orderPrefix) == 0 || bytes.HasPrefix([]byte(p.OrderId), []byte(orderPrefix)) {
				all = append(all, p)
			}
			return nil
		})
	})
	if err != nil {
		return err
	}
	for _, p := range all {
		if err := fn(p); err != nil {
			return err
		}
	}
	return nil
}

// Count returns the number of payments.
func (l *Ledger) Count() (n int) {
	_ = l.db.View(func(tx *bolt.Tx) error {
		n = tx.Bucket(bucketPayments).Stats().KeyN
		return nil
	})
	return n
}

// Watch returns a channel receiving every payment recorded or changed from
// now on, and a function that stops the watch. A watcher that does not keep
// up misses changes rather than slowing the ledger.
func (l *Ledger) Watch() (<-chan *paymentsv1.Payment, func()) {
	ch := make(chan *paymentsv1.Payment, 64)
	l.mu.Lock()
	l.watchers[ch] = struct{}{}
	l.mu.Unlock()
	return ch, func() {
		l.mu.Lock()
		delete(l.watchers, ch)
		l.mu.Unlock()
	}
}

func (l *Ledger) notify(p *paymentsv1.Payment) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for ch := range l.watchers {
		select {
		case ch <- p:
		default:
		}
	}
}

func put(b *bolt.Bucket, p *paymentsv1.Payment) error {
	v, err := proto.Marshal(p)
	if err != nil {
		return err
	}
	return b.Put([]byte(p.PaymentId), v)
}

func decode(v []byte) (*paymentsv1.Payment, error) {
	p := &paymentsv1.Payment{}
	if err := proto.Unmarshal(v, p); err != nil {
		return nil, fmt.Errorf("ledger: corrupt payment: %w", err)
	}
	return p, nil
}
