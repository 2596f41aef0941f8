package api

import (
	"strconv"
	"strings"
)

// Bouncer compatibility, as GET /bouncers and the UI's bouncer page report it
// (README: "Upgrades and version skew").
const (
	// CompatOK: both are releases of the same major at most one minor apart.
	CompatOK = "ok"
	// CompatUnsupported: releases further apart; the older side must be upgraded.
	CompatUnsupported = "unsupported"
	// CompatUnknown: either is not a release (a development build such as
	// "dev", or no heartbeat yet), so nothing is promised.
	CompatUnknown = "unknown"
)

// BouncerCompatibility says whether a muninn-bouncer of version bouncer works
// with a muninn server of version server: CompatOK when both are releases
// (MAJOR.MINOR.PATCH, optionally with a leading "v" and a "-suffix") of the
// same major whose minors differ by at most one, in either direction;
// CompatUnsupported when they are further apart; CompatUnknown when either is
// not a release. The rule holds because, within a major, the bouncer
// endpoints change only so that it stays true: responses gain optional
// fields (bouncers ignore unknown ones) and a bouncer starts sending a new
// request field (heartbeat and report bodies refuse unknown fields) only one
// minor after the server learned to accept it.
func BouncerCompatibility(server, bouncer string) string {
	sMaj, sMin, ok1 := release(server)
	bMaj, bMin, ok2 := release(bouncer)
	switch {
	case !ok1 || !ok2:
		return CompatUnknown
	case sMaj == bMaj && sMin-bMin <= 1 && bMin-sMin <= 1:
		return CompatOK
	}
	return CompatUnsupported
}

// release parses MAJOR.MINOR.PATCH[-suffix] with an optional leading v.
func release(v string) (major, minor int, ok bool) {
	v = strings.TrimPrefix(v, "v")
	v, _, _ = strings.Cut(v, "-")
	v, _, _ = strings.Cut(v, "+")
	parts := strings.Split(v, ".")
	if len(parts) != 3 {
		return 0, 0, false
	}
	var n [3]int
	for i, p := range parts {
		x, err := strconv.Atoi(p)
		if err != nil || x < 0 || p == "" || (len(p) > 1 && p[0] == '0') {
			return 0, 0, false
		}
		n[i] = x
	}
	return n[0], n[1], true
}
