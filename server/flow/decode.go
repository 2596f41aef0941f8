// Package flow is muninn's flow collector: it decodes NetFlow v5, v9, IPFIX
// and sFlow v5 datagrams with goflow2 (used as a library, with our own
// formatter), keeps the flows of registered exporters, and aggregates them
// into what the store keeps (server/store/flows.go): a sighting of every
// outside address, per inside host aggregates, inside hosts, and the events
// they cause.
package flow

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/netsampler/goflow2/v2/producer"
	protoproducer "github.com/netsampler/goflow2/v2/producer/proto"
	goflow "github.com/netsampler/goflow2/v2/utils"
)

// Protocol names the decoder a listener feeds.
type Protocol string

// The protocols a listener can speak (the URI schemes of MUNINN_FLOW_LISTEN,
// as goflow2's -listen names them).
const (
	// NetFlow is NetFlow v5, v9 and IPFIX (the version field decides).
	NetFlow Protocol = "netflow"
	// SFlow is sFlow v5.
	SFlow Protocol = "sflow"
)

// Flow is one flow record copied out of goflow2's pooled message: the
// exporter it came from (the datagram's sender, unmapped; never an sFlow
// agent address written inside the datagram), the addresses (unmapped), ports, IP protocol
// number, the bytes and packets as sent (not yet multiplied by the sampling
// rate), the sampling rate the exporter sent (0: none), the MACs (0: not
// sent) and when the datagram was received.
type Flow struct {
	Exporter     netip.Addr
	Src, Dst     netip.Addr
	SrcPort      uint16
	DstPort      uint16
	Proto        uint8
	Bytes        uint64
	Packets      uint64
	SamplingRate uint64
	SrcMAC       uint64
	DstMAC       uint64
	Received     time.Time
}

// ErrMalformed is returned for a datagram that is not what its header says.
var ErrMalformed = errors.New("flow: malformed datagram")

// ErrNoFlow is returned for a datagram whose protocol a decoder does not speak.
var ErrNoFlow = errors.New("flow: unknown protocol")

// Decoder decodes datagrams into Flows handed to emit. It is safe for
// concurrent use; NetFlow v9/IPFIX templates are kept per exporter address
// and port, so data sets decode only after their template arrived.
type Decoder struct {
	netflow *goflow.NetFlowPipe
	sflow   *goflow.SFlowPipe
}

// formatter is goflow2's output hook: the pipe calls Format for every
// message and recycles the message right after, so Format copies what we
// need and never keeps the pointer.
type formatter struct{ emit func(Flow) }

func (f formatter) Format(data any) ([]byte, []byte, error) {
	m, ok := data.(*protoproducer.ProtoProducerMessage)
	if !ok {
		return nil, nil, fmt.Errorf("flow: unexpected message %T", data)
	}
	src, okS := netip.AddrFromSlice(m.SrcAddr)
	dst, okD := netip.AddrFromSlice(m.DstAddr)
	exp, _ := netip.AddrFromSlice(m.SamplerAddress)
	if !okS || !okD {
		// A record without addresses (e.g. an sFlow counter sample or a
		// non-IP frame) says nothing about hosts.
		return nil, nil, nil
	}
	f.emit(Flow{
		Exporter: exp.Unmap(), Src: src.Unmap(), Dst: dst.Unmap(),
		SrcPort: uint16(m.SrcPort), DstPort: uint16(m.DstPort), Proto: uint8(m.Proto),
		Bytes: m.Bytes, Packets: m.Packets, SamplingRate: m.SamplingRate,
		SrcMAC: m.SrcMac, DstMAC: m.DstMac,
		Received: time.Unix(0, int64(m.TimeReceivedNs)).UTC(),
	})
	return nil, nil, nil
}

// senderProducer credits every flow record to the address its datagram came
// from. goflow2 sets a record's SamplerAddress to the sender for NetFlow and
// IPFIX, but to the agent address written inside an sFlow datagram: a
// switch whose agent address is not its sending address would lose its
// flows (no exporter has that address), and a datagram could claim another
// exporter's name and sampling rate. The sender is what the registration
// check reads, so it is what the records carry.
type senderProducer struct{ producer.ProducerInterface }

func (p senderProducer) Produce(msg any, args *producer.ProduceArgs) ([]producer.ProducerMessage, error) {
	ms, err := p.ProducerInterface.Produce(msg, args)
	sender, _ := args.Src.Addr().Unmap().MarshalBinary()
	for _, m := range ms {
		if pm, ok := m.(*protoproducer.ProtoProducerMessage); ok {
			pm.SamplerAddress = sender
		}
	}
	return ms, err
}

// NewDecoder returns a decoder that hands every flow record to emit
// (called synchronously from Decode; emit must not keep goflow2's memory).
func NewDecoder(emit func(Flow)) (*Decoder, error) {
	cfg, err := (*protoproducer.ProducerConfig)(nil).Compile()
	if err != nil {
		return nil, fmt.Errorf("flow: producer config: %w", err)
	}
	var prod producer.ProducerInterface
	prod, err = protoproducer.CreateProtoProducer(cfg, protoproducer.CreateSamplingSystem)
	if err != nil {
		return nil, fmt.Errorf("flow: producer: %w", err)
	}
	pc := &goflow.PipeConfig{Format: formatter{emit: emit}, Producer: senderProducer{prod}}
	return &Decoder{netflow: goflow.NewNetFlowPipe(pc), sflow: goflow.NewSFlowPipe(pc)}, nil
}

// Decode decodes one datagram of protocol p received from src at received.
// A malformed, truncated or not yet decodable datagram (a v9/IPFIX data set
// whose template has not arrived) returns an error; a panic in the decoder
// is returned as an error too, never propagated.
func (d *Decoder) Decode(p Protocol, src netip.AddrPort, payload []byte, received time.Time) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("flow: decoder panic: %v", r)
		}
	}()
	msg := &goflow.Message{Src: src, Payload: payload, Received: received}
	switch p {
	case NetFlow:
		// goflow2 decodes a truncated v5 datagram without an error, filling
		// the missing records with zeros: check the length the header
		// promises (24 bytes, then 48 a record) first.
		if len(payload) >= 4 && binary.BigEndian.Uint16(payload) == 5 {
			if n := int(binary.BigEndian.Uint16(payload[2:])); len(payload) != 24+48*n {
				return fmt.Errorf("%w: NetFlow v5 datagram of %d bytes announces %d records", ErrMalformed, len(payload), n)
			}
		}
		// A v9 header's count is meant to be the records of every flowset
		// (RFC 3954), softflowd counts only data records, and goflow2 reads
		// it as the number of flowsets to decode: softflowd's datagrams with
		// one template per flowset lose their data sets. Decode every
		// flowset the datagram holds instead (its length bounds the loop).
		if len(payload) >= 4 && binary.BigEndian.Uint16(payload) == 9 {
			msg.Payload = slices.Clone(payload)
			binary.BigEndian.PutUint16(msg.Payload[2:], 0xffff)
		}
		return d.netflow.DecodeFlow(msg)
	case SFlow:
		return d.sflow.DecodeFlow(msg)
	}
	return ErrNoFlow
}
