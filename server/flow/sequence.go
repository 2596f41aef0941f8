package flow

import (
	"encoding/binary"
	"net/netip"
	"sync"
)

// Sequence numbers and what a gap in them means (the unit a lost count is
// in):
//   - NetFlow v5 (Cisco's header): flow_sequence counts flow records; key
//     exporter address, engine type and engine id; unit records.
//   - NetFlow v9 (RFC 3954 §5.1): sequence counts export packets of a
//     Source ID; unit datagrams.
//   - IPFIX (RFC 7011 §3.1): sequence counts the data records sent before
//     this message by an Observation Domain (template and options template
//     records do not count, options data records do); unit records. The
//     records of a message are counted with the templates the tracker
//     learned from the same stream; a data set whose template it has not
//     seen leaves the count unknown and the next message resynchronises.
//   - sFlow v5 (sflow_version_5.txt, sample_datagram_v5): sequence_number
//     counts datagrams of an agent address and sub-agent; unit datagrams.

// Version names the header a sequence number came from (the version label
// of muninn_flow_sequence_*).
type Version string

// The versions whose sequence numbers are tracked.
const (
	VersionNetFlowV5 Version = "netflow_v5"
	VersionNetFlowV9 Version = "netflow_v9"
	VersionIPFIX     Version = "ipfix"
	VersionSFlowV5   Version = "sflow_v5"
)

// reorderWindow is how far behind the expected number a sequence may be and
// still count as a late (reordered or duplicated) datagram: in records for
// v5 and IPFIX, in datagrams for v9 and sFlow. Further behind, or more than
// maxGap ahead, is a restart of the exporter: the tracker resynchronises
// and counts no loss.
func reorderWindow(v Version) uint32 {
	if v == VersionNetFlowV5 || v == VersionIPFIX {
		return 4096
	}
	return 128
}

// maxGap is the largest jump forward counted as loss.
const maxGap = 1 << 20

// restartSlack: an uptime that went back by more than this (ms) with a
// sequence behind the expected one is a restart, not a late datagram.
const restartSlack = 10_000

// SeqResult is what one datagram's header said about its stream.
type SeqResult struct {
	Version Version
	// Lost is the records (v5, IPFIX) or datagrams (v9, sFlow) missing
	// between the previous datagram of the stream and this one.
	Lost uint64
	// Late: the datagram came after a later one (reordered or duplicated);
	// nothing is counted lost for it and the expectation stays.
	Late bool
	// Reset: the stream restarted (or jumped beyond maxGap); the tracker
	// resynchronised to this datagram.
	Reset bool
}

type seqKey struct {
	version Version
	addr    netip.Addr // exporter (v5, v9, IPFIX) or sFlow agent address
	src     netip.Addr // the datagram's source (sFlow)
	domain  uint64     // v5 engine type<<8|id, v9 source id, IPFIX domain, sFlow sub-agent
}

type seqState struct {
	next   uint32 // the sequence number expected next
	uptime uint32 // ms, the last in-order datagram's (0: the header has none)
	known  bool   // next is known (false after a datagram of unknown length)
}

type tmplKey struct {
	exporter netip.Addr
	domain   uint32
	id       uint16
}

// ipfixTemplate is the shape of a template's data record: fixed is the
// record's length without its variable-length fields, vars their count,
// lens every field's length in order (0xffff: variable) when vars > 0.
type ipfixTemplate struct {
	fixed, vars int
	lens        []uint16
}

// SeqTracker follows the sequence numbers of every exporter's streams and
// reports gaps. It is safe for concurrent use; datagrams must be given to
// it in the order they arrived (the collector calls it from the socket's
// reader, before the decode queue can reorder them).
type SeqTracker struct {
	mu        sync.Mutex
	streams   map[seqKey]*seqState
	templates map[tmplKey]ipfixTemplate
}

// NewSeqTracker returns an empty tracker.
func NewSeqTracker() *SeqTracker {
	return &SeqTracker{streams: map[seqKey]*seqState{}, templates: map[tmplKey]ipfixTemplate{}}
}

// Track reads the header of one datagram of protocol p from src and
// compares its sequence number with what its stream expected. ok is false
// for a datagram whose header does not parse (the decoder counts it).
func (t *SeqTracker) Track(p Protocol, src netip.AddrPort, payload []byte) (r SeqResult, ok bool) {
	if !wellFormed(p, payload) {
		return r, false
	}
	exp := src.Addr().Unmap()
	var k seqKey
	var seq, n, uptime uint32
	known := true
	b := payload
	switch {
	case p == NetFlow && len(b) >= 24 && binary.BigEndian.Uint16(b) == 5:
		k = seqKey{version: VersionNetFlowV5, addr: exp, domain: uint64(b[20])<<8 | uint64(b[21])}
		seq, n, uptime = binary.BigEndian.Uint32(b[16:]), uint32(binary.BigEndian.Uint16(b[2:])), binary.BigEndian.Uint32(b[4:])
	case p == NetFlow && len(b) >= 20 && binary.BigEndian.Uint16(b) == 9:
		k = seqKey{version: VersionNetFlowV9, addr: exp, domain: uint64(binary.BigEndian.Uint32(b[16:]))}
		seq, n, uptime = binary.BigEndian.Uint32(b[12:]), 1, binary.BigEndian.Uint32(b[4:])
	case p == NetFlow && len(b) >= 16 && binary.BigEndian.Uint16(b) == 10:
		domain := binary.BigEndian.Uint32(b[12:])
		k = seqKey{version: VersionIPFIX, addr: exp, domain: uint64(domain)}
		seq = binary.BigEndian.Uint32(b[8:])
		t.mu.Lock()
		n, known = t.ipfixRecords(exp, domain, b)
		t.mu.Unlock()
	case p == SFlow && len(b) >= 28 && binary.BigEndian.Uint32(b) == 5:
		var agent netip.Addr
		o := 8
		switch binary.BigEndian.Uint32(b[4:]) {
		case 1:
			agent = netip.AddrFrom4([4]byte(b[8:12]))
			o = 12
		case 2:
			if len(b) < 40 {
				return r, false
			}
			agent = netip.AddrFrom16([16]byte(b[8:24]))
			o = 24
		default:
			return r, false
		}
		k = seqKey{version: VersionSFlowV5, addr: agent, src: exp, domain: uint64(binary.BigEndian.Uint32(b[o:]))}
		seq, n, uptime = binary.BigEndian.Uint32(b[o+4:]), 1, binary.BigEndian.Uint32(b[o+8:])
	default:
		return r, false
	}
	r.Version = k.version
	t.mu.Lock()
	defer t.mu.Unlock()
	s := t.streams[k]
	if s == nil {
		t.streams[k] = &seqState{next: seq + n, uptime: uptime, known: known}
		return r, true
	}
	if !s.known {
		*s = seqState{next: seq + n, uptime: uptime, known: known}
		return r, true
	}
	d := int64(int32(seq - s.next))
	restarted := uptime != 0 && s.uptime != 0 && uptime+restartSlack < s.uptime
	switch {
	case d == 0:
	case d > 0 && d <= maxGap && !restarted:
		r.Lost = uint64(d)
	case d < 0 && -d <= int64(reorderWindow(k.version)) && !restarted:
		r.Late = true
		return r, true
	default:
		r.Reset = true
	}
	*s = seqState{next: seq + n, uptime: uptime, known: known}
	return r, true
}

// wellFormed reports whether a datagram's framing holds together: the
// lengths and counts its header and sets announce add up to the datagram
// (trailing padding of less than a set header is allowed for v9). Only such
// a datagram's sequence number is believed: garbage that merely starts like
// a header would count loss, late datagrams or restarts that never
// happened (a malformed v5 header announcing a jump of 500,000 counted
// 500,000 lost records, and the next good datagram a restart).
func wellFormed(p Protocol, b []byte) bool {
	be16 := func(o int) int { return int(binary.BigEndian.Uint16(b[o:])) }
	switch {
	case p == NetFlow && len(b) >= 24 && be16(0) == 5:
		return len(b) == 24+48*be16(2)
	case p == NetFlow && len(b) >= 20 && be16(0) == 9:
		rest := b[20:]
		for len(rest) >= 4 {
			l := int(binary.BigEndian.Uint16(rest[2:]))
			if l < 4 || l > len(rest) {
				return false
			}
			rest = rest[l:]
		}
		return true
	case p == NetFlow && len(b) >= 16 && be16(0) == 10:
		if be16(2) != len(b) {
			return false
		}
		rest := b[16:]
		for len(rest) > 0 {
			if len(rest) < 4 {
				return false
			}
			l := int(binary.BigEndian.Uint16(rest[2:]))
			if l < 4 || l > len(rest) {
				return false
			}
			rest = rest[l:]
		}
		return true
	case p == SFlow && len(b) >= 28 && binary.BigEndian.Uint32(b) == 5:
		o := 28 // the first sample, after an IPv4 agent address
		switch binary.BigEndian.Uint32(b[4:]) {
		case 1:
		case 2:
			o = 40
		default:
			return false
		}
		if len(b) < o {
			return false
		}
		n := binary.BigEndian.Uint32(b[o-4:])
		rest := b[o:]
		for ; n > 0; n-- {
			if len(rest) < 8 {
				return false
			}
			l := binary.BigEndian.Uint32(rest[4:])
			if l > uint32(len(rest)-8) {
				return false
			}
			rest = rest[8+l:]
		}
		return len(rest) == 0
	}
	return false
}

// ipfixRecords counts the data records of an IPFIX message, learning the
// templates it carries on the way; ok is false when a data set's template
// is unknown or the message is malformed. t.mu is held.
func (t *SeqTracker) ipfixRecords(exp netip.Addr, domain uint32, b []byte) (n uint32, ok bool) {
	if l := int(binary.BigEndian.Uint16(b[2:])); l >= 16 && l <= len(b) {
		b = b[:l]
	}
	b = b[16:]
	for len(b) >= 4 {
		id, l := binary.BigEndian.Uint16(b), int(binary.BigEndian.Uint16(b[2:]))
		if l < 4 || l > len(b) {
			return n, false
		}
		set := b[4:l]
		b = b[l:]
		switch {
		case id == 2 || id == 3:
			if !t.ipfixTemplates(exp, domain, id == 3, set) {
				return n, false
			}
		case id >= 256:
			tp, found := t.templates[tmplKey{exp, domain, id}]
			if !found {
				return n, false
			}
			c, good := tp.count(set)
			if !good {
				return n, false
			}
			n += c
		}
	}
	return n, true
}

// ipfixTemplates learns the template (or options template) records of one
// set (RFC 7011 §3.4); a withdrawal (field count 0) forgets one.
func (t *SeqTracker) ipfixTemplates(exp netip.Addr, domain uint32, options bool, set []byte) bool {
	head := 4
	if options {
		head = 6
	}
	for len(set) >= head {
		id, fields := binary.BigEndian.Uint16(set), int(binary.BigEndian.Uint16(set[2:]))
		if id < 256 {
			return len(set) < 4 // padding
		}
		set = set[head:]
		if fields == 0 {
			delete(t.templates, tmplKey{exp, domain, id})
			continue
		}
		var tp ipfixTemplate
		for range fields {
			if len(set) < 4 {
				return false
			}
			ie, l := binary.BigEndian.Uint16(set), int(binary.BigEndian.Uint16(set[2:]))
			set = set[4:]
			if ie&0x8000 != 0 {
				if len(set) < 4 {
					return false
				}
				set = set[4:]
			}
			if l == 0xffff {
				tp.vars++
			} else {
				tp.fixed += l
			}
			tp.lens = append(tp.lens, uint16(l))
		}
		if tp.vars == 0 {
			tp.lens = nil
		}
		if tp.fixed+tp.vars == 0 {
			return false
		}
		t.templates[tmplKey{exp, domain, id}] = tp
	}
	return true
}

// count counts the records of a data set; what is left shorter than a
// record is padding. Variable-length fields are walked (RFC 7011 §7: a
// length byte, 255 announcing two more).
func (tp ipfixTemplate) count(set []byte) (uint32, bool) {
	min := tp.fixed + tp.vars
	if tp.vars == 0 {
		return uint32(len(set) / min), true
	}
	var n uint32
	for len(set) >= min {
		o := 0
		for _, fl := range tp.lens {
			if fl != 0xffff {
				o += int(fl)
				continue
			}
			if o >= len(set) {
				return n, false
			}
			l := int(set[o])
			o++
			if l == 255 {
				if o+2 > len(set) {
					return n, false
				}
				l = int(binary.BigEndian.Uint16(set[o:]))
				o += 2
			}
			o += l
		}
		if o > len(set) {
			return n, false
		}
		set = set[o:]
		n++
	}
	return n, true
}
