package checkout

import (
	"encoding/json"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

var (
	bucketPending = []byte("pending") // idempotency key -> Entry
	bucketSettled = []byte("settled") // idempotency key -> Entry with PaymentID
)

// Entry is a charge the customer was told is pending: it will be sent again
// with the same idempotency key until the payment service confirms it.
type Entry struct {
	Key         string    `json:"key"`
	OrderID     string    `json:"order_id"`
	AmountMinor int64     `json:"amount_minor"`
	Currency    string    `json:"currency"`
	Reason      string    `json:"reason"` // the fallback level that queued it
	TraceID     string    `json:"trace_id"`
	QueuedAt    time.Time `json:"queued_at"`
	Attempts    int       `json:"attempts"`
	PaymentID   string    `json:"payment_id,omitempty"`
	SettledAt   time.Time `json:"settled_at,omitzero"`
}

// Outbox is a durable queue of pending charges in a bbolt file, so that a
// customer's pending payment survives a client restart.
type Outbox struct {
	db *bolt.DB
}

// OpenOutbox opens (creating if needed) the outbox file at path. It fails
// after a second if another process holds the file.
func OpenOutbox(path string) (*Outbox, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		return nil, fmt.Errorf("outbox: open %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketPending, bucketSettled} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("outbox: init %s: %w", path, err)
	}
	return &Outbox{db: db}, nil
}

// Close closes the file.
func (o *Outbox) Close() error { return o.db.Close() }

// Put queues e. Queuing a key again keeps the first entry.
func (o *Outbox) Put(e Entry) error {
	v, err := json.Marshal(e)
	if err != nil {
		return err
	}
	return o.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketPending)
		if b.Get([]byte(e.Key)) != nil || tx.Bucket(bucketSettled).Get([]byte(e.Key)) != nil {
			return nil
		}
		return b.Put([]byte(e.Key), v)
	})
}

// Pending returns up to max queued entries, oldest key first (max <= 0: all).
func (o *Outbox) Pending(max int) ([]Entry, error) {
	return o.list(bucketPending, max)
}

// Settled returns the entries settled so far.
func (o *Outbox) Settled() ([]Entry, error) { return o.list(bucketSettled, 0) }

func (o *Outbox) list(bucket []byte, max int) ([]Entry, error) {
	var out []Entry
	err := o.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucket).Cursor()
		for k, v := c.First(); k != nil && (max <= 0 || len(out) < max); k, v = c.Next() {
			var e Entry
			if err := json.Unmarshal(v, &e); err != nil {
				return fmt.Errorf("outbox: corrupt entry %q: %w", k, err)
			}
			out = append(out, e)
		}
		return nil
	})
	return out, err
}

// Len returns the number of pending entries.
func (o *Outbox) Len() (n int) {
	_ = o.db.View(func(tx *bolt.Tx) error {
		n = tx.Bucket(bucketPending).Stats().KeyN
		return nil
	})
	return n
}

// Settle moves the entry with key to the settled entries.
func (o *Outbox) Settle(key, paymentID string, at time.Time) error {
	return o.db.Update(func(tx *bolt.Tx) error {
		p := tx.Bucket(bucketPending)
		v := p.Get([]byte(key))
		if v == nil {
			return nil
		}
		var e Entry
		if err := json.Unmarshal(v, &e); err != nil {
			return err
		}
		e.PaymentID, e.SettledAt = paymentID, at
		nv, err := json.Marshal(e)
		if err != nil {
			return err
		}
		if err := tx.Bucket(bucketSettled).Put([]byte(key), nv); err != nil {
			return err
		}
		return p.Delete([]byte(key))
	})
}

// Touch counts a failed delivery attempt of key.
func (o *Outbox) Touch(key string) error {
	return o.db.Update(func(tx *bolt.Tx) error {
		p := tx.Bucket(bucketPending)
		v := p.Get([]byte(key))
		if v == nil {
			return nil
		}
		var e Entry
		if err := json.Unmarshal(v, &e); err != nil {
			return err
		}
		e.Attempts++
		nv, err := json.Marshal(e)
		if err != nil {
			return err
		}
		return p.Put([]byte(key), nv)
	})
}
