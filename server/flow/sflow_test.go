package flow_test

import (
	"encoding/binary"
	"net/netip"
)

// sflowSample is one sFlow v5 flow sample of a raw packet header: an
// Ethernet frame carrying IPv4 TCP from src:srcPort to dst:dstPort, with
// the frame length and sampling rate the agent reports.
type sflowSample struct {
	src, dst         string
	srcPort, dstPort uint16
	frameLen, rate   uint32
}

// sflowDatagram builds an sFlow v5 datagram (sflow_version_5.txt:
// sample_datagram_v5 with an IPv4 agent address) of flow samples
// (enterprise 0, format 1), each with one sampled_header record.
func sflowDatagram(agent string, seq uint32, samples ...sflowSample) []byte {
	b := sflowHeader(agent, 0, seq, 1000)
	binary.BigEndian.PutUint32(b[24:], uint32(len(samples)))
	for i, s := range samples {
		// Ethernet (14) + IPv4 (20) + TCP ports (4), padded to 4 bytes.
		hdr := make([]byte, 40)
		copy(hdr[0:], []byte{2, 0, 0, 0, 0, 2})
		copy(hdr[6:], []byte{2, 0, 0, 0, 0, 1})
		binary.BigEndian.PutUint16(hdr[12:], 0x0800)
		ip := hdr[14:]
		ip[0] = 0x45
		binary.BigEndian.PutUint16(ip[2:], 40)
		ip[8], ip[9] = 64, 6
		a, d := netip.MustParseAddr(s.src).As4(), netip.MustParseAddr(s.dst).As4()
		copy(ip[12:], a[:])
		copy(ip[16:], d[:])
		binary.BigEndian.PutUint16(ip[20:], s.srcPort)
		binary.BigEndian.PutUint16(ip[22:], s.dstPort)
		var rec []byte
		for _, v := range []uint32{1, 16 + uint32(len(hdr)), 1, s.frameLen, 4, 38} {
			rec = binary.BigEndian.AppendUint32(rec, v)
		}
		rec = append(rec, hdr...)
		var smp []byte
		for _, v := range []uint32{uint32(seq)*100 + uint32(i), 3, s.rate, s.rate, 0, 3, 4, 1} {
			smp = binary.BigEndian.AppendUint32(smp, v)
		}
		smp = append(smp, rec...)
		b = binary.BigEndian.AppendUint32(b, 1)
		b = binary.BigEndian.AppendUint32(b, uint32(len(smp)))
		b = append(b, smp...)
	}
	return b
}
