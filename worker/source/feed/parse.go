// Package feed parses threat-feed formats into canonical prefixes and fetches
// feeds over http(s) or from local files.
//
// Parsers stream: they read line by line (or token by token for JSON) and keep
// only the resulting prefixes, so a feed of a million lines costs the memory of
// its prefixes and not of its text.
package feed

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"strings"
)

// Format names accepted by Parse.
const (
	FormatList     = "list"
	FormatIPsum    = "ipsum"
	FormatSpamhaus = "spamhaus"
	FormatCSV      = "csv"
	FormatJSON     = "json"
	FormatDShield  = "dshield"
)

// Formats lists every format Parse accepts, sorted.
func Formats() []string {
	return []string{FormatCSV, FormatDShield, FormatIPsum, FormatJSON, FormatList, FormatSpamhaus}
}

// MaxRejectedKept is how many rejected lines a Result keeps; all are counted.
const MaxRejectedKept = 100

// maxLineBytes bounds one line; a longer line fails the parse instead of
// silently splitting it.
const maxLineBytes = 1 << 20

// Options tune a parser. The zero value is valid for every format except csv
// without a header, where Column 0 is used.
type Options struct {
	// MinCount drops ipsum entries seen on fewer than MinCount lists (0 or 1
	// keeps everything). Only for ipsum.
	MinCount int
	// Column is the zero-based csv column holding the address. Only for csv.
	Column int
	// ColumnName selects the csv column by its header name; it implies a
	// header line and overrides Column. Only for csv.
	ColumnName string
	// Comma is the csv field separator; zero means ','. Only for csv.
	Comma rune
	// Header skips the first csv record. Only for csv.
	Header bool
	// MaxPrefixLen refuses prefixes wider than the given lengths.
	MaxPrefixLen MaxPrefixLen
}

// Validate reports options that make no sense for format.
func (o Options) Validate(format string) error {
	if !slices.Contains(Formats(), format) {
		return fmt.Errorf("feed: unknown format %q (want one of %s)", format, strings.Join(Formats(), ", "))
	}
	if o.MinCount < 0 {
		return fmt.Errorf("feed: min count %d is negative", o.MinCount)
	}
	if o.MinCount > 0 && format != FormatIPsum {
		return fmt.Errorf("feed: min count only applies to the ipsum format, not %q", format)
	}
	csvSet := o.Column != 0 || o.ColumnName != "" || o.Comma != 0 || o.Header
	if csvSet && format != FormatCSV {
		return fmt.Errorf("feed: column, comma and header only apply to the csv format, not %q", format)
	}
	if o.Column < 0 {
		return fmt.Errorf("feed: csv column %d is negative", o.Column)
	}
	if o.Comma == '"' || o.Comma == '\r' || o.Comma == '\n' || o.Comma == 0xFFFD {
		return fmt.Errorf("feed: csv comma %q is not allowed", o.Comma)
	}
	v4, v6 := o.MaxPrefixLen.limits()
	if v4 > 32 || v6 > 128 {
		return fmt.Errorf("feed: max prefix length %d/%d out of range", v4, v6)
	}
	return nil
}

// Rejected is one input line that produced no prefix.
type Rejected struct {
	Line   int
	Text   string
	Reason string
}

// Result is what a parse produced.
type Result struct {
	// Prefixes are the canonical prefixes in input order, each exactly once.
	Prefixes []netip.Prefix
	// Duplicates counts prefixes seen again after their first occurrence.
	Duplicates int
	// Filtered counts entries dropped on purpose (ipsum MinCount, metadata).
	Filtered int
	// Rejected holds the first MaxRejectedKept rejected lines.
	Rejected []Rejected
	// RejectedCount counts all rejected lines.
	RejectedCount int
	// Lines is the number of input lines (records for csv) read.
	Lines int
}

// Parse reads a feed in the given format from r. A body SniffBody refuses
// (UTF-16, an HTML page) fails with ErrUTF16 or ErrHTML before any line is
// read.
func Parse(format string, opts Options, r io.Reader) (Result, error) {
	if err := opts.Validate(format); err != nil {
		return Result{}, err
	}
	c := newCollector(opts)
	br := bufio.NewReaderSize(r, 64<<10)
	head, err := br.Peek(sniffLen)
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, bufio.ErrBufferFull) {
		return Result{}, fmt.Errorf("feed: parse %s: %w", format, err)
	}
	if err := SniffBody(head); err != nil {
		return Result{}, fmt.Errorf("feed: parse %s: %w", format, err)
	}
	if err := SkipBOM(br); err != nil {
		return Result{}, fmt.Errorf("feed: parse %s: %w", format, err)
	}
	r = br
	switch format {
	case FormatList:
		err = scanLines(r, c, parseListLine)
	case FormatIPsum:
		err = scanLines(r, c, func(c *collector, n int, line string) { parseIPsumLine(c, n, line, opts.MinCount) })
	case FormatSpamhaus:
		err = scanLines(r, c, parseSpamhausLine)
	case FormatDShield:
		err = scanLines(r, c, parseDShieldLine)
	case FormatCSV:
		err = parseCSV(r, c, opts)
	case FormatJSON:
		err = parseJSON(r, c)
	}
	if err != nil {
		return Result{}, fmt.Errorf("feed: parse %s: %w", format, err)
	}
	return c.res, nil
}

// collector accumulates prefixes, dedups them and applies the width guard.
type collector struct {
	res          Result
	seen         map[netip.Prefix]struct{}
	minV4, minV6 int
}

func newCollector(opts Options) *collector {
	v4, v6 := opts.MaxPrefixLen.limits()
	return &collector{seen: make(map[netip.Prefix]struct{}), minV4: v4, minV6: v6}
}

func (c *collector) reject(line int, text, reason string) {
	c.res.RejectedCount++
	if len(c.res.Rejected) < MaxRejectedKept {
		c.res.Rejected = append(c.res.Rejected, Rejected{Line: line, Text: text, Reason: reason})
	}
}

// addText parses s as an address or prefix and adds it, rejecting the line on
// failure.
func (c *collector) addText(line int, text, s string) {
	p, err := ParsePrefix(s)
	if err != nil {
		c.reject(line, text, err.Error())
		return
	}
	c.add(line, text, p)
}

func (c *collector) add(line int, text string, p netip.Prefix) {
	limit := c.minV6
	if p.Addr().Is4() {
		limit = c.minV4
	}
	if limit >= 0 && p.Bits() < limit {
		c.reject(line, text, fmt.Sprintf("prefix %s is wider than /%d", p, limit))
		return
	}
	if _, dup := c.seen[p]; dup {
		c.res.Duplicates++
		return
	}
	c.seen[p] = struct{}{}
	c.res.Prefixes = append(c.res.Prefixes, p)
}

// SkipBOM discards a UTF-8 byte-order mark at the start of br, which
// Windows tools put before text (a feed's first line, an ingest body's first
// line or its array would otherwise not parse). Errors other than a body
// shorter than a mark are returned.
func SkipBOM(br *bufio.Reader) error {
	b, err := br.Peek(3)
	if err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	if len(b) == 3 && b[0] == 0xEF && b[1] == 0xBB && b[2] == 0xBF {
		_, err = br.Discard(3)
		return err
	}
	return nil
}

type lineFunc func(c *collector, n int, line string)

func scanLines(r io.Reader, c *collector, fn lineFunc) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64*1024), maxLineBytes)
	n := 0
	for sc.Scan() {
		n++
		fn(c, n, sc.Text())
	}
	c.res.Lines = n
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return fmt.Errorf("line %d: longer than %d bytes: %w", n+1, maxLineBytes, err)
		}
		return fmt.Errorf("read line %d: %w", n+1, err)
	}
	return nil
}

func isComment(s string) bool {
	return s == "" || s[0] == '#' || s[0] == ';'
}

// cutField splits the first whitespace-separated field from s.
func cutField(s string) (field, rest string) {
	i := strings.IndexAny(s, " \t")
	if i < 0 {
		return s, ""
	}
	return s[:i], strings.TrimSpace(s[i:])
}

// parseListLine handles FireHOL netsets/ipsets and plain lists: an address or
// CIDR, optionally followed by a comment. Anything else after it is refused,
// so a feed of another shape fed to this parser shows up as rejections rather
// than as wrong prefixes.
func parseListLine(c *collector, n int, line string) {
	s := strings.TrimSpace(line)
	if isComment(s) {
		return
	}
	if i := strings.IndexAny(s, "#;"); i >= 0 {
		s = strings.TrimSpace(s[:i])
	}
	field, rest := cutField(s)
	if rest != "" {
		c.reject(n, line, fmt.Sprintf("unexpected text %q after address", rest))
		return
	}
	c.addText(n, line, field)
}
