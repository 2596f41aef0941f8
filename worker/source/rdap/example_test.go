package rdap_test

import (
	"fmt"

	"github.com/muninn/muninn/worker/source/rdap"
)

func ExampleParseWhois() {
	text := `% Information related to '192.0.2.0 - 192.0.2.255'

inetnum:        192.0.2.0 - 192.0.2.255
netname:        EXAMPLE-NET
country:        NL
org:            ORG-EX1-RIPE
abuse-c:        EXA1-RIPE

organisation:   ORG-EX1-RIPE
org-name:       Example B.V.

role:           Example Abuse
nic-hdl:        EXA1-RIPE
abuse-mailbox:  abuse@example.net
`
	n, err := rdap.ParseWhois("ripe", text)
	if err != nil {
		panic(err)
	}
	fmt.Println(n.Prefixes, n.Name, n.Org, n.Country, n.AbuseEmail)
	// Output: [192.0.2.0/24] EXAMPLE-NET Example B.V. NL abuse@example.net
}
