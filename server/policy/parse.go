package policy

import (
	"fmt"
	"strconv"
	"strings"
)

// SyntaxError is an error in ruleset or selector text. Line and Col are 1-based
// (Col counts bytes); Msg says what was expected and what was found.
type SyntaxError struct {
	Line int
	Col  int
	Msg  string
}

// Error returns "line:col: message".
func (e *SyntaxError) Error() string {
	return fmt.Sprintf("%d:%d: %s", e.Line, e.Col, e.Msg)
}

type tokKind int

const (
	tokWord tokKind = iota
	tokString
	tokComma
)

// token is one lexical item of a line.
type token struct {
	kind tokKind
	text string // unquoted text for tokString
	raw  string // as written, for messages
	line int
	col  int
}

// isSpace reports whether c separates tokens.
func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f'
}

// lexLine splits one line into tokens; '#' outside quotes starts a comment.
func lexLine(num int, s string) ([]token, error) {
	var toks []token
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case isSpace(c):
			i++
		case c == '#':
			return toks, nil
		case c == ',':
			toks = append(toks, token{kind: tokComma, text: ",", raw: ",", line: num, col: i + 1})
			i++
		case c == '"':
			j := i + 1
			for j < len(s) && s[j] != '"' {
				if s[j] == '\\' {
					j++
				}
				j++
			}
			if j >= len(s) {
				return nil, &SyntaxError{Line: num, Col: i + 1, Msg: "unterminated quoted string"}
			}
			raw := s[i : j+1]
			text, err := strconv.Unquote(raw)
			if err != nil {
				return nil, &SyntaxError{Line: num, Col: i + 1, Msg: fmt.Sprintf("invalid escape in quoted string %s", raw)}
			}
			toks = append(toks, token{kind: tokString, text: text, raw: raw, line: num, col: i + 1})
			i = j + 1
		default:
			j := i
			for j < len(s) && !isSpace(s[j]) && s[j] != ',' && s[j] != '"' && s[j] != '#' {
				j++
			}
			toks = append(toks, token{kind: tokWord, text: s[i:j], raw: s[i:j], line: num, col: i + 1})
			i = j
		}
	}
	return toks, nil
}

// tokens is a cursor over tokens; end is where "end of line/text" errors point.
type tokens struct {
	toks    []token
	pos     int
	endLine int
	endCol  int
	endName string
}

func (p *tokens) peek() *token {
	if p.pos < len(p.toks) {
		return &p.toks[p.pos]
	}
	return nil
}

func (p *tokens) next() *token {
	t := p.peek()
	if t != nil {
		p.pos++
	}
	return t
}

// errAt returns a SyntaxError at t (or at the end when t is nil).
func (p *tokens) errAt(t *token, format string, args ...any) *SyntaxError {
	if t == nil {
		return &SyntaxError{Line: p.endLine, Col: p.endCol, Msg: fmt.Sprintf(format, args...)}
	}
	return &SyntaxError{Line: t.line, Col: t.col, Msg: fmt.Sprintf(format, args...)}
}

// expected returns "expected WHAT, found X".
func (p *tokens) expected(t *token, what string) *SyntaxError {
	if t == nil {
		return p.errAt(nil, "expected %s, found %s", what, p.endName)
	}
	return p.errAt(t, "expected %s, found %s", what, quoteTok(t))
}

func quoteTok(t *token) string {
	if t.kind == tokString {
		return t.raw
	}
	return strconv.Quote(t.raw)
}

// word consumes a bare word.
func (p *tokens) word(what string) (*token, error) {
	t := p.next()
	if t == nil || t.kind != tokWord {
		return nil, p.expected(t, what)
	}
	return t, nil
}

// end requires that no tokens remain.
func (p *tokens) end() error {
	if t := p.peek(); t != nil {
		return p.expected(t, p.endName)
	}
	return nil
}

// list parses item (',' item)*, calling fn with each item token.
func (p *tokens) list(what string, fn func(t *token) error) error {
	for {
		t := p.next()
		if t == nil || t.kind == tokComma {
			return p.expected(t, what)
		}
		if err := fn(t); err != nil {
			return err
		}
		if n := p.peek(); n == nil || n.kind != tokComma {
			return nil
		}
		p.next()
	}
}

const condExpected = "a condition (tag, classification, country, continent, asn, org, cidr, list, source, optionally after not)"

// conds parses cond ("and" cond)* up to the end of the tokens.
func (p *tokens) conds() ([]Cond, error) {
	var out []Cond
	for {
		t := p.next()
		var c Cond
		if t != nil && t.kind == tokWord && t.text == "not" {
			c.Not = true
			t = p.next()
		}
		if t == nil || t.kind != tokWord || !isCondKind(t.text) {
			return nil, p.expected(t, condExpected)
		}
		c.Kind = t.text
		err := p.list("a "+c.Kind+" value", func(v *token) error {
			cv, err := canonicalValue(c.Kind, v.text)
			if err != nil {
				return p.errAt(v, "%s", err.Error())
			}
			c.Values = append(c.Values, cv)
			return nil
		})
		if err != nil {
			return nil, err
		}
		out = append(out, c)
		n := p.next()
		if n == nil {
			return out, nil
		}
		if n.kind != tokWord || n.text != "and" {
			return nil, p.expected(n, `"and", "," or `+p.endName)
		}
	}
}

func isCondKind(s string) bool {
	for _, k := range condKinds {
		if k == s {
			return true
		}
	}
	return false
}

// splitLines returns the lines of text; \r\n line ends are accepted.
func splitLines(text string) []string {
	return strings.Split(text, "\n")
}

// Parse parses the text form of a ruleset (DESIGN.md §4). Errors are *SyntaxError.
func Parse(text string) (*Ruleset, error) {
	if len(text) > MaxTextSize {
		return nil, &SyntaxError{Line: 1, Col: 1, Msg: fmt.Sprintf("ruleset text is %d bytes, at most %d allowed", len(text), MaxTextSize)}
	}
	var rs *Ruleset
	seen := map[string]int{}
	lines := splitLines(text)
	for i, s := range lines {
		num := i + 1
		toks, err := lexLine(num, s)
		if err != nil {
			return nil, err
		}
		if len(toks) == 0 {
			continue
		}
		p := &tokens{toks: toks, endLine: num, endCol: len(strings.TrimRight(s, "\r")) + 1, endName: "end of line"}
		if rs == nil {
			if err := p.header(); err != nil {
				return nil, err
			}
			rs = &Ruleset{Name: toks[1].text, Hook: HookInput}
			continue
		}
		kw := p.next()
		if kw.kind == tokWord {
			switch kw.text {
			case "hook", "scope", "default", "honeypot":
				key := kw.text
				if kw.text == "honeypot" {
					if n := p.peek(); n != nil {
						key += " " + n.text
					}
				}
				if prev, dup := seen[key]; dup {
					return nil, p.errAt(kw, "duplicate %s line (first on line %d)", key, prev)
				}
				seen[key] = num
			}
		}
		if err := p.statement(rs, kw); err != nil {
			return nil, err
		}
	}
	if rs == nil {
		return nil, &SyntaxError{Line: len(lines), Col: 1, Msg: `expected "ruleset NAME", found end of text`}
	}
	if len(rs.Rules) == 0 && rs.Default == "" {
		return nil, &SyntaxError{Line: len(lines), Col: 1, Msg: "expected a rule or a default line, found end of text (a ruleset needs at least one)"}
	}
	return rs, nil
}

// header parses "ruleset NAME".
func (p *tokens) header() error {
	t := p.next()
	if t.kind != tokWord || t.text != "ruleset" {
		return p.expected(t, `"ruleset NAME"`)
	}
	n := p.next()
	if n == nil || n.kind != tokWord || !isName(n.text) {
		return p.expected(n, "a ruleset name (letters, digits, '-', '_', '.', at most 64)")
	}
	return p.end()
}

const statementExpected = "hook, scope, default, honeypot or a rule (block, allow, log, throttle)"

// statement parses one line after the header; kw is its first token.
func (p *tokens) statement(rs *Ruleset, kw *token) error {
	if kw.kind != tokWord {
		return p.expected(kw, statementExpected)
	}
	switch kw.text {
	case "ruleset":
		return p.errAt(kw, "a text holds one ruleset; found a second ruleset line")
	case "hook":
		t, err := p.word("input or forward")
		if err != nil {
			return err
		}
		if t.text != HookInput && t.text != HookForward {
			return p.expected(t, "input or forward")
		}
		rs.Hook = t.text
		return p.end()
	case "default":
		t, err := p.word("allow or block")
		if err != nil {
			return err
		}
		if t.text != string(ActionAllow) && t.text != string(ActionBlock) {
			return p.expected(t, "allow or block")
		}
		rs.Default = Action(t.text)
		return p.end()
	case "scope":
		return p.scope(&rs.Scope)
	case "honeypot":
		return p.honeypot(&rs.Honeypot)
	case string(ActionBlock), string(ActionAllow), string(ActionLog), string(ActionThrottle):
		if len(rs.Rules) == MaxRules {
			return p.errAt(kw, "too many rules: at most %d allowed", MaxRules)
		}
		r := Rule{Action: Action(kw.text)}
		if r.Action == ActionThrottle {
			t, err := p.word("a rate (e.g. 10/second)")
			if err != nil {
				return err
			}
			if err := checkRate(t.text); err != nil {
				return p.errAt(t, "%s", err.Error())
			}
			r.Rate = t.text
		}
		conds, err := p.conds()
		if err != nil {
			return err
		}
		r.Conds = conds
		rs.Rules = append(rs.Rules, r)
		return nil
	}
	return p.expected(kw, statementExpected)
}

// scope parses "[tcp|udp] [dport PORTS] [iifname NAMES]" in any order.
func (p *tokens) scope(s *Scope) error {
	seen := map[string]bool{}
	for first := true; ; first = false {
		t := p.next()
		if t == nil && !first {
			return nil
		}
		if t == nil || t.kind != tokWord {
			return p.expected(t, "tcp, udp, dport or iifname")
		}
		key := t.text
		if key == "udp" {
			key = "tcp"
		}
		if seen[key] {
			return p.errAt(t, "%s given twice in scope", t.text)
		}
		seen[key] = true
		switch t.text {
		case "tcp", "udp":
			s.Protocol = t.text
		case "dport":
			err := p.list("a port or port range (e.g. 443 or 1000-2000)", func(v *token) error {
				r, err := parsePortRange(v.text)
				if err != nil {
					return p.errAt(v, "%s", err.Error())
				}
				s.DPorts = append(s.DPorts, r)
				return nil
			})
			if err != nil {
				return err
			}
		case "iifname":
			err := p.list("an interface name", func(v *token) error {
				if !isIfName(v.text) {
					return p.errAt(v, "%q is not an interface name", v.text)
				}
				s.IIfNames = append(s.IIfNames, v.text)
				return nil
			})
			if err != nil {
				return err
			}
		default:
			return p.expected(t, "tcp, udp, dport or iifname")
		}
	}
}

// honeypot parses "tcp|udp PORTS".
func (p *tokens) honeypot(h *Honeypot) error {
	t, err := p.word("tcp or udp")
	if err != nil {
		return err
	}
	var dst *[]uint16
	switch t.text {
	case "tcp":
		dst = &h.TCP
	case "udp":
		dst = &h.UDP
	default:
		return p.expected(t, "tcp or udp")
	}
	err = p.list("a port", func(v *token) error {
		n, err := parsePort(v.text)
		if err != nil {
			return p.errAt(v, "%s", err.Error())
		}
		*dst = append(*dst, n)
		return nil
	})
	if err != nil {
		return err
	}
	return p.end()
}

// ParseSelector parses the text of a named list: conditions joined by "and",
// the same syntax as one rule's conditions, possibly over several lines.
// Errors are *SyntaxError.
func ParseSelector(text string) ([]Cond, error) {
	if len(text) > MaxTextSize {
		return nil, &SyntaxError{Line: 1, Col: 1, Msg: fmt.Sprintf("selector text is %d bytes, at most %d allowed", len(text), MaxTextSize)}
	}
	lines := splitLines(text)
	p := &tokens{endLine: len(lines), endCol: 1, endName: "end of text"}
	for i, s := range lines {
		toks, err := lexLine(i+1, s)
		if err != nil {
			return nil, err
		}
		if len(toks) > 0 {
			p.endLine, p.endCol = i+1, len(strings.TrimRight(s, "\r"))+1
		}
		p.toks = append(p.toks, toks...)
	}
	return p.conds()
}
