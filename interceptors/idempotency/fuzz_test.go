package idempotency_test

import (
	"context"
	"strings"
	"testing"

	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/failsoft/failsoft/interceptors/idempotency"
)

// validKey is the rule written out plainly, to check ValidateKey against.
func validKey(k string) bool {
	if len(k) < 1 || len(k) > 255 || strings.HasPrefix(k, " ") || strings.HasSuffix(k, " ") {
		return false
	}
	for _, r := range []byte(k) {
		if r < ' ' || r > '~' {
			return false
		}
	}
	return true
}

func FuzzValidateKey(f *testing.F) {
	for _, s := range []string{"", "a", " a", "a ", "a b", "9b2f0c4e-3c1d-4f6e-8a6b-2f1d0e9c7a55", "\x7f", "é", "a\x00", strings.Repeat("x", 255), strings.Repeat("x", 256)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, k string) {
		err := idempotency.ValidateKey(k)
		if (err == nil) != validKey(k) {
			t.Fatalf("ValidateKey(%q) = %v, want valid = %v", k, err, validKey(k))
		}
		if err != nil {
			return
		}
		// A valid key is a valid gRPC metadata value, and survives a trip
		// through metadata unchanged.
		md := metadata.Pairs("idempotency-key", k)
		if got := md.Get("idempotency-key"); len(got) != 1 || got[0] != k {
			t.Fatalf("metadata changed %q to %q", k, got)
		}
		if strings.TrimSpace(k) != k {
			t.Fatalf("valid key %q would be trimmed", k)
		}
	})
}

// FuzzFingerprint: equal requests have equal fingerprints however they were
// built (map order included); the method is part of the fingerprint.
func FuzzFingerprint(f *testing.F) {
	seed, _ := structpb.NewStruct(map[string]any{"amount": 12.5, "currency": "EUR", "tags": []any{"a", "b"}, "meta": map[string]any{"x": true, "y": nil}})
	b, _ := proto.Marshal(seed)
	f.Add("/pay.v1.Pay/Charge", b)
	f.Add("/pay.v1.Pay/Charge", []byte{})
	f.Fuzz(func(t *testing.T, method string, data []byte) {
		m := &structpb.Struct{}
		if err := proto.Unmarshal(data, m); err != nil {
			return
		}
		fp1, err := idempotency.FingerprintOf(method, m)
		if err != nil {
			t.Fatal(err)
		}
		// The same message, rebuilt: a clone, and a decode of a
		// non-deterministic encoding (map fields in random order).
		clone := proto.Clone(m).(*structpb.Struct)
		raw, err := proto.MarshalOptions{Deterministic: false}.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		decoded := &structpb.Struct{}
		if err := proto.Unmarshal(raw, decoded); err != nil {
			t.Fatal(err)
		}
		for _, other := range []*structpb.Struct{clone, decoded} {
			if fp, _ := idempotency.FingerprintOf(method, other); fp != fp1 {
				t.Fatalf("equal requests, fingerprints %v and %v", fp1, fp)
			}
		}
		if fp, _ := idempotency.FingerprintOf(method+"x", m); fp == fp1 {
			t.Fatal("fingerprint ignores the method")
		}
		// A changed request has another fingerprint.
		decoded.Fields = map[string]*structpb.Value{"changed": structpb.NewBoolValue(true)}
		if !proto.Equal(decoded, m) {
			if fp, _ := idempotency.FingerprintOf(method, decoded); fp == fp1 {
				t.Fatal("different requests, same fingerprint")
			}
		}
	})
}

func TestFingerprintNotProto(t *testing.T) {
	if _, err := idempotency.FingerprintOf("/a.B/C", struct{}{}); err == nil {
		t.Error("FingerprintOf a non-proto value succeeded")
	}
}

// FuzzIncomingKey: the key of a request is accepted only as exactly one
// valid value of its metadata entry, whatever else the metadata holds.
func FuzzIncomingKey(f *testing.F) {
	f.Add("order-42", "", uint8(1))
	f.Add("a", "b", uint8(2))
	f.Add(" padded", "", uint8(1))
	f.Add("", "", uint8(0))
	f.Fuzz(func(t *testing.T, first, second string, n uint8) {
		md := metadata.MD{}
		vals := []string{first, second, first}[:min(int(n), 3)]
		if len(vals) > 0 {
			md["idempotency-key"] = vals
		}
		md["x-other"] = []string{second}
		key, err := idempotency.IncomingKey(metadata.NewIncomingContext(context.Background(), md))
		want := len(vals) == 1 && validKey(first)
		if (err == nil) != want || (err == nil && key != first) {
			t.Fatalf("IncomingKey(%q) = %q, %v; want accepted = %v", vals, key, err, want)
		}
	})
}
