package sensor

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// cowrieEvent is the part of a Cowrie JSON log event (output plugin jsonlog)
// the parser reads.
type cowrieEvent struct {
	EventID   string `json:"eventid"`
	SrcIP     string `json:"src_ip"`
	Sensor    string `json:"sensor"`
	Timestamp string `json:"timestamp"`
	Session   string `json:"session"`
	Username  string `json:"username"`
	Input     string `json:"input"`
	URL       string `json:"url"`
}

// cowrieKinds maps event ids to kinds; other ids with a src_ip are
// KindHoneypotOther.
var cowrieKinds = map[string]string{
	"cowrie.session.connect":       KindHoneypotConnect,
	"cowrie.login.failed":          KindHoneypotLogin,
	"cowrie.login.success":         KindHoneypotSuccess,
	"cowrie.command.input":         KindHoneypotCommand,
	"cowrie.command.failed":        KindHoneypotCommand,
	"cowrie.session.file_download": KindHoneypotDownload,
	"cowrie.session.file_upload":   KindHoneypotDownload,
}

// cowrieTime parses Cowrie's ISO 8601 timestamps: microseconds and "Z"
// under TZ=UTC, else a numeric offset such as "+0000".
func cowrieTime(s string) (time.Time, error) {
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05.999999999-0700"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, fmt.Errorf("timestamp %q is not ISO 8601", s)
}

func parseCowrie(line string) ([]Event, error) {
	var c cowrieEvent
	if err := json.Unmarshal([]byte(line), &c); err != nil {
		return nil, fmt.Errorf("cowrie JSON: %w", err)
	}
	if !strings.HasPrefix(c.EventID, "cowrie.") {
		return nil, errors.New("cowrie JSON: eventid must start with \"cowrie.\"")
	}
	if c.SrcIP == "" {
		return nil, nil
	}
	a, err := parseIP(c.SrcIP)
	if err != nil {
		return nil, fmt.Errorf("cowrie JSON: src_ip: %w", err)
	}
	at, err := cowrieTime(c.Timestamp)
	if err != nil {
		return nil, fmt.Errorf("cowrie JSON: %w", err)
	}
	kind, ok := cowrieKinds[c.EventID]
	if !ok {
		kind = KindHoneypotOther
	}
	detail := c.EventID
	switch {
	case c.Input != "":
		detail += " " + c.Input
	case c.URL != "":
		detail += " " + c.URL
	}
	return []Event{{Addr: a, Kind: kind, At: at, Host: c.Sensor, User: c.Username, Detail: detail}}, nil
}
