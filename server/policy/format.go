package policy

import (
	"strconv"
	"strings"
)

// Format returns the canonical text of rs: header lines in a fixed order,
// rule lines indented by two spaces, values quoted only when they must be.
// Parse(Format(rs)) equals rs for any ruleset Parse or Canonicalize accepts.
func Format(rs *Ruleset) string {
	var b strings.Builder
	b.WriteString("ruleset ")
	b.WriteString(rs.Name)
	b.WriteString("\n")
	hook := rs.Hook
	if hook == "" {
		hook = HookInput
	}
	b.WriteString("  hook " + hook + "\n")
	if s := rs.Scope; s.Protocol != "" || len(s.DPorts) > 0 || len(s.IIfNames) > 0 {
		b.WriteString("  scope")
		if s.Protocol != "" {
			b.WriteString(" " + s.Protocol)
		}
		if len(s.DPorts) > 0 {
			b.WriteString(" dport ")
			for i, p := range s.DPorts {
				if i > 0 {
					b.WriteByte(',')
				}
				b.WriteString(p.String())
			}
		}
		if len(s.IIfNames) > 0 {
			b.WriteString(" iifname ")
			for i, n := range s.IIfNames {
				if i > 0 {
					b.WriteByte(',')
				}
				b.WriteString(n)
			}
		}
		b.WriteString("\n")
	}
	if rs.Default != "" {
		b.WriteString("  default " + string(rs.Default) + "\n")
	}
	writeHoneypot(&b, "tcp", rs.Honeypot.TCP)
	writeHoneypot(&b, "udp", rs.Honeypot.UDP)
	for _, r := range rs.Rules {
		b.WriteString("  ")
		b.WriteString(FormatRule(r))
		b.WriteString("\n")
	}
	return b.String()
}

func writeHoneypot(b *strings.Builder, proto string, ports []uint16) {
	if len(ports) == 0 {
		return
	}
	b.WriteString("  honeypot " + proto + " ")
	for i, p := range ports {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.Itoa(int(p)))
	}
	b.WriteString("\n")
}

// FormatRule returns the canonical text of one rule, e.g.
// `block tag ipsum and not country US`.
func FormatRule(r Rule) string {
	s := string(r.Action)
	if r.Action == ActionThrottle {
		s += " " + r.Rate
	}
	return s + " " + FormatSelector(r.Conds)
}

// FormatSelector returns the canonical text of conditions joined by "and".
func FormatSelector(conds []Cond) string {
	var b strings.Builder
	for i, c := range conds {
		if i > 0 {
			b.WriteString(" and ")
		}
		if c.Not {
			b.WriteString("not ")
		}
		b.WriteString(c.Kind)
		for j, v := range c.Values {
			if j > 0 {
				b.WriteByte(',')
			}
			b.WriteByte(' ')
			b.WriteString(formatValue(v))
		}
	}
	return b.String()
}

// formatValue writes v bare when the lexer reads it back as one word with the
// same text, quoted otherwise.
func formatValue(v string) string {
	if v == "" || v == "and" || v == "not" {
		return strconv.Quote(v)
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c <= ' ' || c >= 0x7f || c == ',' || c == '"' || c == '#' || c == '\\' {
			return strconv.Quote(v)
		}
	}
	return v
}
