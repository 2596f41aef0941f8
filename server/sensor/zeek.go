package sensor

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// zeekTSV is the header state of a Zeek TSV log.
type zeekTSV struct {
	sep    string
	setSep string
	fields map[string]int
}

// zeekRecord reads one field of a Zeek record, JSON or TSV.
type zeekRecord interface {
	str(name string) string
	list(name string) []string
	ts() (time.Time, error)
}

type zeekJSONRecord map[string]json.RawMessage

func (r zeekJSONRecord) str(name string) string {
	raw := r[name]
	var s string
	if json.Unmarshal(raw, &s) != nil {
		if len(raw) > 0 && raw[0] != '[' && raw[0] != '{' && raw[0] != 'n' {
			return string(raw) // a number (a port) or a boolean
		}
		return ""
	}
	return s
}

func (r zeekJSONRecord) list(name string) []string {
	var l []string
	if json.Unmarshal(r[name], &l) != nil {
		return nil
	}
	return l
}

func (r zeekJSONRecord) ts() (time.Time, error) { return epoch(r["ts"]) }

type zeekTSVRecord struct {
	h    *zeekTSV
	cols []string
}

func (r zeekTSVRecord) str(name string) string {
	i, ok := r.h.fields[name]
	if !ok || i >= len(r.cols) || r.cols[i] == "-" || r.cols[i] == "(empty)" {
		return ""
	}
	return r.cols[i]
}

func (r zeekTSVRecord) list(name string) []string {
	s := r.str(name)
	if s == "" {
		return nil
	}
	return strings.Split(s, r.h.setSep)
}

func (r zeekTSVRecord) ts() (time.Time, error) { return epoch(json.RawMessage(r.str("ts"))) }

// parseZeek reads a line of Zeek's dns.log (dns true) or conn.log, JSON
// (flat dotted keys) or TSV (columns named by the #fields header).
func (p *Parser) parseZeek(line string, dns bool) ([]Event, error) {
	var rec zeekRecord
	switch {
	case strings.HasPrefix(line, "{"):
		var j zeekJSONRecord
		if err := json.Unmarshal([]byte(line), &j); err != nil {
			return nil, fmt.Errorf("zeek JSON: %w", err)
		}
		rec = j
	case strings.HasPrefix(line, "#"):
		return nil, p.zeekHeader(line)
	default:
		if p.zeek.fields == nil {
			return nil, errors.New("zeek TSV: a row before the #fields header")
		}
		rec = zeekTSVRecord{h: &p.zeek, cols: strings.Split(line, p.zeek.sep)}
	}
	at, err := rec.ts()
	if err != nil {
		return nil, fmt.Errorf("zeek: ts: %w", err)
	}
	orig := rec.str("id.orig_h")
	if dns {
		client, _ := parseIP(orig)
		name := strings.TrimSuffix(rec.str("query"), ".")
		if name == "" {
			return nil, nil
		}
		var evs []Event
		for _, ans := range rec.list("answers") {
			a, err := parseIP(ans)
			if err != nil {
				continue // a CNAME or other name in the answers
			}
			evs = append(evs, Event{Addr: a, Kind: KindDNSAnswer, At: at, Detail: rec.str("qtype_name"),
				DNS: &DNSAnswer{Name: name, Client: client}})
		}
		return evs, nil
	}
	a, err := parseIP(orig)
	if err != nil {
		return nil, fmt.Errorf("zeek: id.orig_h: %w", err)
	}
	state := rec.str("conn_state")
	kind := KindConn
	switch state {
	case "S0", "REJ", "RSTOS0", "RSTRH", "SH", "SHR", "OTH":
		kind = KindConnRejected
	}
	detail := strings.TrimSpace(rec.str("proto") + " " + rec.str("id.resp_h") + ":" + rec.str("id.resp_p") + " " + state)
	return []Event{{Addr: a, Kind: kind, At: at, Detail: detail}}, nil
}

// zeekHeader reads a "#..." header line of a TSV log.
func (p *Parser) zeekHeader(line string) error {
	if v, ok := strings.CutPrefix(line, "#separator "); ok {
		sep := strings.ReplaceAll(v, `\x09`, "\t")
		if sep == "" {
			return errors.New("zeek TSV: empty #separator")
		}
		p.zeek = zeekTSV{sep: sep, setSep: ","}
		return nil
	}
	if p.zeek.sep == "" {
		p.zeek.sep, p.zeek.setSep = "\t", ","
	}
	key, val, _ := strings.Cut(line[1:], p.zeek.sep)
	switch key {
	case "set_separator":
		if val != "" {
			p.zeek.setSep = val
		}
	case "fields":
		p.zeek.fields = map[string]int{}
		for i, f := range strings.Split(val, p.zeek.sep) {
			p.zeek.fields[f] = i
		}
	}
	return nil
}
