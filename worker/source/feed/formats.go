package feed

import (
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"sort"
	"strconv"
	"strings"
)

// parseIPsumLine handles stamparm/ipsum: "IP<TAB>count", count = number of
// lists the address is on.
func parseIPsumLine(c *collector, n int, line string, minCount int) {
	s := strings.TrimSpace(line)
	if isComment(s) {
		return
	}
	field, rest := cutField(s)
	if rest == "" {
		c.reject(n, line, "missing list count")
		return
	}
	count, err := strconv.Atoi(rest)
	if err != nil || count < 0 {
		c.reject(n, line, fmt.Sprintf("invalid list count %q", rest))
		return
	}
	if count < minCount {
		c.res.Filtered++
		return
	}
	c.addText(n, line, field)
}

// spamhausRecord is one line of drop_v4.json / drop_v6.json.
type spamhausRecord struct {
	CIDR  string `json:"cidr"`
	SBLID string `json:"sblid"`
	Type  string `json:"type"`
}

// parseSpamhausLine handles both DROP shapes: the text form "prefix ; SBLnnn"
// with ';' comments, and the JSON-lines form with one {"cidr","sblid","rir"}
// object per line and a trailing {"type":"metadata",...} line.
func parseSpamhausLine(c *collector, n int, line string) {
	s := strings.TrimSpace(line)
	if isComment(s) {
		return
	}
	if s[0] == '{' {
		var rec spamhausRecord
		if err := json.Unmarshal([]byte(s), &rec); err != nil {
			c.reject(n, line, "invalid JSON: "+err.Error())
			return
		}
		if rec.Type == "metadata" {
			c.res.Filtered++
			return
		}
		if rec.CIDR == "" {
			c.reject(n, line, "JSON record has no cidr")
			return
		}
		c.addText(n, line, rec.CIDR)
		return
	}
	prefix, _, _ := strings.Cut(s, ";")
	prefix = strings.TrimSpace(prefix)
	field, rest := cutField(prefix)
	if rest != "" {
		c.reject(n, line, fmt.Sprintf("unexpected text %q after prefix", rest))
		return
	}
	c.addText(n, line, field)
}

// parseDShieldLine handles feeds.dshield.org/block.txt: tab-separated start,
// end, prefix length and then attack counts and contact details.
func parseDShieldLine(c *collector, n int, line string) {
	s := strings.TrimSpace(line)
	if isComment(s) {
		return
	}
	f := strings.Split(s, "\t")
	if len(f) < 3 {
		c.reject(n, line, "want start, end and prefix length separated by tabs")
		return
	}
	if strings.EqualFold(strings.TrimSpace(f[0]), "start") {
		return // column header
	}
	start, err := netip.ParseAddr(strings.TrimSpace(f[0]))
	if err != nil {
		c.reject(n, line, fmt.Sprintf("invalid start address %q", f[0]))
		return
	}
	end, err := netip.ParseAddr(strings.TrimSpace(f[1]))
	if err != nil {
		c.reject(n, line, fmt.Sprintf("invalid end address %q", f[1]))
		return
	}
	bits, err := strconv.Atoi(strings.TrimSpace(f[2]))
	if err != nil {
		c.reject(n, line, fmt.Sprintf("invalid prefix length %q", f[2]))
		return
	}
	p, err := start.Unmap().Prefix(bits)
	if err != nil || p.Addr() != start.Unmap() || lastAddr(p) != end.Unmap() {
		c.reject(n, line, fmt.Sprintf("range %s-%s is not the prefix /%d", start, end, bits))
		return
	}
	c.add(n, line, p)
}

// lastAddr returns the highest address in p.
func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

func parseCSV(r io.Reader, c *collector, opts Options) error {
	cr := csv.NewReader(r)
	cr.FieldsPerRecord = -1
	cr.LazyQuotes = true
	cr.ReuseRecord = true
	cr.Comment = '#'
	if opts.Comma != 0 {
		cr.Comma = opts.Comma
	}
	col := opts.Column
	header := opts.Header || opts.ColumnName != ""
	records := 0
	for {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		line, _ := cr.FieldPos(0)
		if err != nil {
			var pe *csv.ParseError
			if errors.As(err, &pe) {
				// A broken record is a rejected line, not a failed feed.
				c.reject(pe.StartLine, "", pe.Err.Error())
				records++
				continue
			}
			return fmt.Errorf("read csv record %d: %w", records+1, err)
		}
		records++
		if header && records == 1 {
			if opts.ColumnName != "" {
				col = -1
				for i, name := range rec {
					if strings.EqualFold(strings.TrimSpace(name), opts.ColumnName) {
						col = i
						break
					}
				}
				if col < 0 {
					return fmt.Errorf("csv header has no column %q", opts.ColumnName)
				}
			}
			continue
		}
		text := strings.Join(rec, string(cr.Comma))
		if col >= len(rec) {
			c.reject(line, text, fmt.Sprintf("record has %d fields, want column %d", len(rec), col))
			continue
		}
		c.addText(line, text, strings.TrimSpace(rec[col]))
	}
	c.res.Lines = records
	return nil
}

// lineCounter remembers where newlines are so that a json.Decoder offset can
// be turned into a line number for rejected values.
type lineCounter struct {
	r        io.Reader
	off      int64
	newlines []int64
}

func (l *lineCounter) Read(p []byte) (int, error) {
	n, err := l.r.Read(p)
	for i := range p[:n] {
		if p[i] == '\n' {
			l.newlines = append(l.newlines, l.off+int64(i))
		}
	}
	l.off += int64(n)
	return n, err
}

// line returns the 1-based line of byte offset off.
func (l *lineCounter) line(off int64) int {
	return sort.Search(len(l.newlines), func(i int) bool { return l.newlines[i] >= off }) + 1
}

// parseJSON walks every token of one JSON document or a stream of them
// (NDJSON) and takes each string value (not object keys) that parses as an
// address or CIDR. Other strings are not rejections: they are names, dates
// and the like that a JSON feed carries next to its addresses.
func parseJSON(r io.Reader, c *collector) error {
	lc := &lineCounter{r: r}
	dec := json.NewDecoder(lc)
	dec.UseNumber()
	// stack holds, per open container, whether it is an object and whether
	// its next string token is a key.
	type frame struct{ object, wantKey bool }
	var stack []frame
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			var se *json.SyntaxError
			if errors.As(err, &se) {
				// Not err itself: it quotes the feed's bytes.
				return fmt.Errorf("json near line %d: malformed JSON", lc.line(dec.InputOffset()))
			}
			return fmt.Errorf("json near line %d: %w", lc.line(dec.InputOffset()), err)
		}
		isKey := false
		if len(stack) > 0 {
			top := &stack[len(stack)-1]
			if top.object {
				isKey = top.wantKey
				top.wantKey = !top.wantKey
			}
		}
		switch v := tok.(type) {
		case json.Delim:
			switch v {
			case '{':
				stack = append(stack, frame{object: true, wantKey: true})
			case '[':
				stack = append(stack, frame{})
			case '}', ']':
				// The toggle above ran on the container being
				// closed, which is harmless: it is popped here.
				// Its parent was toggled when it opened.
				stack = stack[:len(stack)-1]
				continue
			}
		case string:
			if isKey {
				continue
			}
			if p, err := ParsePrefix(strings.TrimSpace(v)); err == nil {
				c.add(lc.line(dec.InputOffset()), v, p)
			}
		}
	}
	c.res.Lines = len(lc.newlines)
	if lc.off > 0 && (len(lc.newlines) == 0 || lc.newlines[len(lc.newlines)-1] != lc.off-1) {
		c.res.Lines++
	}
	return nil
}
