package rdap_test

import (
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/muninn/muninn/worker/source/rdap"
)

func TestParseWhois(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		file, registry string
		want           rdap.Network
	}{
		{"whois_arin.txt", "arin", rdap.Network{
			Prefixes: []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24")},
			Handle:   "NET-198-51-100-0-1", Name: "DOC-CUSTOMER-NET", Org: "Doc Customer LLC", Country: "US",
			AbuseEmail: "abuse@transit.example",
		}},
		{"whois_ripe.txt", "ripe", rdap.Network{
			Prefixes: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")},
			Handle:   "192.0.2.0 - 192.0.2.255", Name: "EXAMPLE-HOSTING-NET", Org: "Example Hosting B.V.", Country: "NL",
			AbuseEmail: "abuse@hosting.example",
		}},
		{"whois_apnic.txt", "apnic", rdap.Network{
			Prefixes: []netip.Prefix{netip.MustParsePrefix("2001:db8:1000::/36")},
			Handle:   "2001:db8:1000::/36", Name: "SAMPLE-BROADBAND-V6", Org: "Sample Broadband Pty Ltd", Country: "AU",
			AbuseEmail: "abuse@broadband.example",
		}},
		{"whois_afrinic.txt", "afrinic", rdap.Network{
			Prefixes: []netip.Prefix{netip.MustParsePrefix("203.0.113.0/25")},
			Handle:   "203.0.113.0 - 203.0.113.127", Name: "SAMPLE-NG-CUST", Org: "Sample Networks Limited", Country: "NG",
			AbuseEmail: "abuse@sample-ng.example",
		}},
		{"whois_lacnic.txt", "lacnic", rdap.Network{
			Prefixes: []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24")},
			Handle:   "198.51.100/24", Name: "UY-EJTE-LACNIC", Org: "Ejemplo Telecomunicaciones S.A.", Country: "UY",
			AbuseEmail: "abuse@ejemplo.example",
		}},
	} {
		t.Run(tc.file, func(t *testing.T) {
			t.Parallel()
			text, err := os.ReadFile(filepath.Join("testdata", tc.file))
			require.NoError(t, err)
			// The layout is detected from the text: the hint does not matter.
			for _, hint := range []string{tc.registry, ""} {
				got, err := rdap.ParseWhois(hint, string(text))
				require.NoError(t, err)
				require.Equal(t, tc.want, *got)
			}
		})
	}
}

func TestParseWhoisErrors(t *testing.T) {
	t.Parallel()
	for name, text := range map[string]string{
		"empty":         "",
		"comments only": "% nothing here\n% at all\n",
		"bad netrange":  "NetRange: 192.0.2.0\nNetName: X\n",
		"reversed":      "NetRange: 192.0.2.255 - 192.0.2.0\n",
		"cidr mismatch": "NetRange: 192.0.2.0 - 192.0.2.255\nCIDR: 198.51.100.0/24\n",
		"bad inetnum":   "inetnum: 192.0.2.0 - nope\nnetname: X\n",
		"bad inet6num":  "inet6num: 2001:db8::/200\n",
		"bad lacnic":    "inetnum: 300.1/16\nowner: X\n",
	} {
		_, err := rdap.ParseWhois("", text)
		require.Error(t, err, name)
		require.Contains(t, err.Error(), "rdap: parse whois", name)
	}
}
