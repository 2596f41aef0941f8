package sensor

import (
	"strings"
	"testing"
)

// FuzzSSHDNeedles: a message any sshd rule's expression matches holds the
// rule's needle, so skipping the expression when the needle is missing
// never loses an event.
func FuzzSSHDNeedles(f *testing.F) {
	for _, s := range []string{
		"Failed password for invalid user admin from 203.0.113.9 port 50122 ssh2",
		"error: PAM: Authentication failure for root from 203.0.113.9",
		"User not known to the underlying authentication module for bob from 203.0.113.9",
		"Invalid user a from 2001:db8::7 port 1",
		"ROOT LOGIN REFUSED FROM 203.0.113.9 port 2",
		"User root from 203.0.113.9 not allowed because not listed in AllowUsers",
		"refused connect from host (203.0.113.9)",
		"error: maximum authentication attempts exceeded for root from 203.0.113.9 port 1 ssh2 [preauth]",
		"Received disconnect from 203.0.113.9 port 1:3: com.jcraft.jsch.JSchException: Auth fail [preauth]",
		"Connection closed by authenticating user root 203.0.113.9 port 4242 [preauth]",
		"Did not receive identification string from 203.0.113.9 port 1",
		"Timeout before authentication for connection from 203.0.113.9 to 192.0.2.1, pid = 1",
		"Bad protocol version identification 'GET / HTTP/1.1' from 203.0.113.9 port 1",
		"Unable to negotiate with 203.0.113.9 port 1: no matching key exchange method found.",
		"banner exchange: Connection from 203.0.113.9 port 1: invalid format",
		"Accepted publickey for git from 203.0.113.9 port 1 ssh2: ED25519 SHA256:x",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, msg string) {
		for _, r := range sshdRules {
			if r.re.MatchString(msg) && !strings.Contains(msg, r.needle) {
				t.Fatalf("%q matches %s but lacks its needle %q", msg, r.re, r.needle)
			}
		}
	})
}
