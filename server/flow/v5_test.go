package flow_test

import (
	"encoding/binary"
	"net/netip"
)

// v5Record is one NetFlow v5 record for a crafted datagram.
type v5Record struct {
	src, dst         string
	srcPort, dstPort uint16
	proto            uint8
	packets, bytes   uint32
}

// netflowV5 builds a NetFlow v5 datagram (header 24 bytes, 48 bytes a
// record, Cisco's layout) with sampling interval sampling (mode 01 in the
// top two bits when non-zero).
func netflowV5(seq uint32, sampling uint16, recs ...v5Record) []byte {
	b := make([]byte, 24+48*len(recs))
	binary.BigEndian.PutUint16(b[0:], 5)
	binary.BigEndian.PutUint16(b[2:], uint16(len(recs)))
	binary.BigEndian.PutUint32(b[4:], 1000)       // sys uptime ms
	binary.BigEndian.PutUint32(b[8:], 1796040000) // unix secs
	binary.BigEndian.PutUint32(b[16:], seq)
	if sampling > 0 {
		binary.BigEndian.PutUint16(b[22:], 1<<14|sampling)
	}
	for i, r := range recs {
		o := b[24+48*i:]
		s, d := netip.MustParseAddr(r.src).As4(), netip.MustParseAddr(r.dst).As4()
		copy(o[0:], s[:])
		copy(o[4:], d[:])
		binary.BigEndian.PutUint32(o[16:], r.packets)
		binary.BigEndian.PutUint32(o[20:], r.bytes)
		binary.BigEndian.PutUint32(o[24:], 500)
		binary.BigEndian.PutUint32(o[28:], 900)
		binary.BigEndian.PutUint16(o[32:], r.srcPort)
		binary.BigEndian.PutUint16(o[34:], r.dstPort)
		o[38] = r.proto
	}
	return b
}
