package payserver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/failsoft/failsoft/demo/internal/ledger"
	"github.com/failsoft/failsoft/interceptors/policy"
	paymentsv1 "github.com/failsoft/failsoft/proto/payments/v1"
)

// service implements PaymentService over the ledger.
type service struct {
	paymentsv1.UnimplementedPaymentServiceServer
	ledger *ledger.Ledger
	log    *slog.Logger
	// dedup is how the ledger answers a repeated key of a unary Charge.
	// Batches are always deduplicated by the ledger: the idempotency
	// interceptor leaves streams to the handler.
	dedup ledger.Dedup

	committed, replayed atomic.Uint64
}

func keyOf(ctx context.Context) string {
	if v := metadata.ValueFromIncomingContext(ctx, policy.KeyMetadata); len(v) > 0 {
		return v[0]
	}
	return ""
}

func checkCharge(c *paymentsv1.ChargeRequest) error {
	switch {
	case c == nil:
		return status.Error(codes.InvalidArgument, "charge is missing")
	case c.OrderId == "":
		return status.Error(codes.InvalidArgument, "order_id is required")
	case c.AmountMinor <= 0:
		return status.Errorf(codes.InvalidArgument, "amount_minor must be positive, got %d", c.AmountMinor)
	case len(c.Currency) != 3:
		return status.Errorf(codes.InvalidArgument, "currency must be an ISO 4217 code, got %q", c.Currency)
	}
	return nil
}

func needKey(ctx context.Context, method string) (string, error) {
	key := keyOf(ctx)
	if key == "" {
		return "", status.Errorf(codes.InvalidArgument, "%s requires an %s metadata entry", method, policy.KeyMetadata)
	}
	return key, nil
}

func (s *service) charge(ctx context.Context, dedup ledger.Dedup, batch bool, charges []ledger.Charge) ([]*paymentsv1.Payment, error) {
	if err := ctx.Err(); err != nil {
		// The client gave up before the work started: do not commit.
		return nil, status.FromContextError(err).Err()
	}
	out, replayed, err := s.ledger.Charge(time.Now(), dedup, batch, charges...)
	if err != nil {
		s.log.Error("ledger write failed", "err", err)
		return nil, status.Error(codes.Internal, err.Error())
	}
	if replayed {
		s.replayed.Add(1)
	} else {
		s.committed.Add(uint64(len(charges)))
	}
	return out, nil
}

func (s *service) Charge(ctx context.Context, req *paymentsv1.ChargeRequest) (*paymentsv1.ChargeResponse, error) {
	key, err := needKey(ctx, "Charge")
	if err != nil {
		return nil, err
	}
	if err := checkCharge(req); err != nil {
		return nil, err
	}
	out, err := s.charge(ctx, s.dedup, false, []ledger.Charge{{Key: key, OrderID: req.OrderId, AmountMinor: req.AmountMinor, Currency: req.Currency}})
	if err != nil {
		return nil, err
	}
	return &paymentsv1.ChargeResponse{Payment: out[0]}, nil
}

func (s *service) GetPayment(_ context.Context, req *paymentsv1.GetPaymentRequest) (*paymentsv1.GetPaymentResponse, error) {
	p, err := s.ledger.Get(req.PaymentId)
	if err != nil {
		return nil, ledgerErr(err, req.PaymentId)
	}
	return &paymentsv1.GetPaymentResponse{Payment: p}, nil
}

func (s *service) Refund(_ context.Context, req *paymentsv1.RefundRequest) (*paymentsv1.RefundResponse, error) {
	p, err := s.ledger.Refund(req.PaymentId)
	if err != nil {
		return nil, ledgerErr(err, req.PaymentId)
	}
	return &paymentsv1.RefundResponse{Payment: p}, nil
}

func ledgerErr(err error, id string) error {
	if errors.Is(err, ledger.ErrNotFound) {
		return status.Errorf(codes.NotFound, "no payment %q", id)
	}
	return status.Error(codes.Internal, err.Error())
}

func (s *service) ListPayments(req *paymentsv1.ListPaymentsRequest, stream grpc.ServerStreamingServer[paymentsv1.ListPaymentsResponse]) error {
	return s.ledger.List(req.OrderIdPrefix, func(p *paymentsv1.Payment) error {
		return stream.Send(&paymentsv1.ListPaymentsResponse{Payment: p})
	})
}

// maxBatch bounds a batch so a client cannot make the server hold an
// unbounded request.
const maxBatch = 100

func (s *service) BatchCharge(stream grpc.ClientStreamingServer[paymentsv1.BatchChargeRequest, paymentsv1.BatchChargeResponse]) error {
	key, err := needKey(stream.Context(), "BatchCharge")
	if err != nil {
		return err
	}
	var charges []ledger.Charge
	for {
		req, err := stream.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		if err := checkCharge(req.Charge); err != nil {
			return err
		}
		if len(charges) == maxBatch {
			return status.Errorf(codes.InvalidArgument, "a batch holds at most %d charges", maxBatch)
		}
		c := req.Charge
		charges = append(charges, ledger.Charge{
			Key: fmt.Sprintf("%s/%d", key, len(charges)), OrderID: c.OrderId, AmountMinor: c.AmountMinor, Currency: c.Currency,
		})
	}
	if len(charges) == 0 {
		return status.Error(codes.InvalidArgument, "empty batch")
	}
	out, err := s.charge(stream.Context(), ledger.DedupAll, true, charges)
	if err != nil {
		return err
	}
	return stream.SendAndClose(&paymentsv1.BatchChargeResponse{Payments: out})
}

func (s *service) WatchPayments(stream grpc.BidiStreamingServer[paymentsv1.WatchPaymentsRequest, paymentsv1.WatchPaymentsResponse]) error {
	changes, stop := s.ledger.Watch()
	defer stop()
	ids := make(chan string)
	recvErr := make(chan error, 1)
	ctx := stream.Context()
	go func() {
		for {
			req, err := stream.Recv()
			if err != nil {
				recvErr <- err
				return
			}
			select {
			case ids <- req.PaymentId:
			case <-ctx.Done():
				recvErr <- ctx.Err()
				return
			}
		}
	}()
	watched := map[string]bool{}
	send := func(p *paymentsv1.Payment) error {
		return stream.Send(&paymentsv1.WatchPaymentsResponse{Payment: p})
	}
	for {
		select {
		case id := <-ids:
			watched[id] = true
			p, err := s.ledger.Get(id)
			if errors.Is(err, ledger.ErrNotFound) {
				p, err = &paymentsv1.Payment{PaymentId: id, Status: paymentsv1.PaymentStatus_PAYMENT_STATUS_NOT_FOUND}, nil
			}
			if err != nil {
				return status.Error(codes.Internal, err.Error())
			}
			if err := send(p); err != nil {
				return err
			}
		case p := <-changes:
			if watched[p.PaymentId] {
				if err := send(p); err != nil {
					return err
				}
			}
		case err := <-recvErr:
			if err == io.EOF {
				return nil
			}
			return err
		}
	}
}
