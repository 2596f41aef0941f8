package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"time"
	"unicode/utf8"

	"github.com/go-faster/jx"
)

// errSlowPath makes decodeFast hand a line to encoding/json.
var errSlowPath = errors.New("needs encoding/json")

// decodeFast decodes the common shape of an ingest line, one object of the
// known keys spelled exactly, valid UTF-8 with no backslash escapes, no duplicate keys
// and a non-null ttl, into o and reports true; it reports false for
// anything else, and decodeStrict (encoding/json) then decides, with its
// error. Whatever it accepts, decodeStrict decodes to the same value
// (FuzzDecodeFastAgrees); it exists because encoding/json's Decoder costs
// about 5 µs a line, most of ingest's CPU at 100k lines/s.
func decodeFast(b []byte, o *observation) bool {
	if bytes.IndexByte(b, '\\') >= 0 || !utf8.Valid(b) {
		return false
	}
	var seen [7]bool
	once := func(i int) error {
		if seen[i] {
			return errSlowPath
		}
		seen[i] = true
		return nil
	}
	str := func(d *jx.Decoder, dst *string) error {
		if d.Next() != jx.String {
			return errSlowPath
		}
		s, err := d.Str()
		*dst = s
		return err
	}
	d := jx.DecodeBytes(b)
	if d.Next() != jx.Object {
		return false
	}
	err := d.ObjBytes(func(d *jx.Decoder, key []byte) error {
		switch string(key) {
		case "ip":
			if err := once(0); err != nil {
				return err
			}
			return str(d, &o.IP)
		case "source":
			if err := once(1); err != nil {
				return err
			}
			return str(d, &o.Source)
		case "classification":
			if err := once(2); err != nil {
				return err
			}
			return str(d, &o.Classification)
		case "note":
			if err := once(3); err != nil {
				return err
			}
			return str(d, &o.Note)
		case "tags":
			if err := once(4); err != nil {
				return err
			}
			if d.Next() != jx.Array {
				return errSlowPath
			}
			o.Tags = []string{}
			return d.Arr(func(d *jx.Decoder) error {
				var t string
				if err := str(d, &t); err != nil {
					return err
				}
				o.Tags = append(o.Tags, t)
				return nil
			})
		case "seen_at":
			if err := once(5); err != nil {
				return err
			}
			if d.Next() != jx.String {
				return errSlowPath
			}
			raw, err := d.Raw()
			if err != nil {
				return err
			}
			var t time.Time
			if err := t.UnmarshalJSON(raw); err != nil {
				return errSlowPath
			}
			o.SeenAt = &t
			return nil
		case "ttl":
			if err := once(6); err != nil {
				return err
			}
			if d.Next() == jx.Null {
				return errSlowPath
			}
			raw, err := d.Raw()
			if err != nil {
				return err
			}
			o.TTL = json.RawMessage(bytes.Clone(raw))
			return nil
		}
		return errSlowPath
	})
	if err != nil {
		return false
	}
	// Only whitespace may follow the object.
	return d.Skip() == io.EOF
}
