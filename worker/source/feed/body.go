package feed

import (
	"bytes"
	"errors"
)

// ErrUTF16 is a body encoded as UTF-16 (a byte-order mark FF FE or FE FF, or
// text whose every other byte is NUL), which no parser reads: every line
// would be rejected.
var ErrUTF16 = errors.New("body is UTF-16; convert to UTF-8")

// ErrHTML is a body that is an HTML page (an error or login page served
// with status 200) rather than a feed.
var ErrHTML = errors.New("body is an HTML page, not a feed")

// sniffLen is how much of a body SniffBody needs.
const sniffLen = 512

// SniffBody reports a body no feed format can hold, from its first bytes
// (up to 512 suffice; fewer for a short body): ErrUTF16 or ErrHTML. Leading
// whitespace and a UTF-8 byte-order mark are ignored for the HTML check. It
// returns nil for anything else, including an empty body.
func SniffBody(head []byte) error {
	if len(head) > sniffLen {
		head = head[:sniffLen]
	}
	if len(head) >= 2 && (head[0] == 0xFF && head[1] == 0xFE || head[0] == 0xFE && head[1] == 0xFF) {
		return ErrUTF16
	}
	if nulInterleaved(head) {
		return ErrUTF16
	}
	t := bytes.TrimPrefix(head, []byte{0xEF, 0xBB, 0xBF})
	t = bytes.TrimLeft(t, " \t\r\n")
	for _, p := range [][]byte{[]byte("<!doctype html"), []byte("<html")} {
		if len(t) >= len(p) && bytes.EqualFold(t[:len(p)], p) {
			return ErrHTML
		}
	}
	return nil
}

// nulInterleaved reports UTF-16 without a byte-order mark: ASCII text in
// UTF-16 has a NUL in every other byte. At least 4 bytes are needed, and
// every byte on one parity must be NUL while the other parity holds some
// non-NUL (so a run of NULs is not taken for text).
func nulInterleaved(b []byte) bool {
	n := len(b) &^ 1
	if n < 4 {
		return false
	}
	for parity := range 2 {
		allNul, someText := true, false
		for i := 0; i < n; i += 2 {
			if b[i+parity] != 0 {
				allNul = false
				break
			}
			if b[i+1-parity] != 0 {
				someText = true
			}
		}
		if allNul && someText {
			return true
		}
	}
	return false
}
