package idempotency

import (
	"encoding/binary"
	"errors"
	"slices"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
)

// capturingStream passes a handler's header and trailer metadata to the
// real transport stream and keeps a copy, so that a replay sends them too.
type capturingStream struct {
	grpc.ServerTransportStream
	mu      sync.Mutex
	header  metadata.MD
	trailer metadata.MD
}

func (s *capturingStream) SetHeader(md metadata.MD) error {
	if err := s.ServerTransportStream.SetHeader(md); err != nil {
		return err
	}
	s.mu.Lock()
	s.header = metadata.Join(s.header, md)
	s.mu.Unlock()
	return nil
}

func (s *capturingStream) SendHeader(md metadata.MD) error {
	if err := s.ServerTransportStream.SendHeader(md); err != nil {
		return err
	}
	s.mu.Lock()
	s.header = metadata.Join(s.header, md)
	s.mu.Unlock()
	return nil
}

func (s *capturingStream) SetTrailer(md metadata.MD) error {
	if err := s.ServerTransportStream.SetTrailer(md); err != nil {
		return err
	}
	s.mu.Lock()
	s.trailer = metadata.Join(s.trailer, md)
	s.mu.Unlock()
	return nil
}

func (s *capturingStream) captured() (header, trailer []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return encodeMD(s.header), encodeMD(s.trailer)
}

// encodeMD encodes md with its keys in order: per key its length and
// bytes, the number of values, and each value's length and bytes. Empty
// metadata encodes to nil.
func encodeMD(md metadata.MD) []byte {
	if md.Len() == 0 {
		return nil
	}
	keys := make([]string, 0, len(md))
	for k := range md {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var b []byte
	for _, k := range keys {
		b = binary.AppendUvarint(b, uint64(len(k)))
		b = append(b, k...)
		b = binary.AppendUvarint(b, uint64(len(md[k])))
		for _, v := range md[k] {
			b = binary.AppendUvarint(b, uint64(len(v)))
			b = append(b, v...)
		}
	}
	return b
}

var errBadMD = errors.New("stored metadata is corrupt")

func decodeMD(b []byte) (metadata.MD, error) {
	if len(b) == 0 {
		return nil, nil
	}
	md := metadata.MD{}
	next := func() (string, error) {
		n, w := binary.Uvarint(b)
		if w <= 0 || n > uint64(len(b)-w) {
			return "", errBadMD
		}
		s := string(b[w : w+int(n)])
		b = b[w+int(n):]
		return s, nil
	}
	for len(b) > 0 {
		k, err := next()
		if err != nil {
			return nil, err
		}
		count, w := binary.Uvarint(b)
		if w <= 0 || count > uint64(len(b)) {
			return nil, errBadMD
		}
		b = b[w:]
		vals := make([]string, 0, count)
		for range count {
			v, err := next()
			if err != nil {
				return nil, err
			}
			vals = append(vals, v)
		}
		md[k] = vals
	}
	return md, nil
}
