package feed

// CatalogFeed describes a well-known public feed the operator can enable.
// Catalog feeds ship disabled: some carry terms of use (see Description) that
// the operator must accept first.
type CatalogFeed struct {
	Name           string
	URL            string
	Format         string
	Tag            string
	Classification string
	// Schedule is a Go duration string: how often to refresh.
	Schedule    string
	Description string
}

// Catalog returns the built-in list of public feeds.
func Catalog() []CatalogFeed {
	const firehol = "https://raw.githubusercontent.com/firehol/blocklist-ipsets/master/"
	return []CatalogFeed{
		{
			Name: "firehol_level1", URL: firehol + "firehol_level1.netset", Format: FormatList,
			Tag: "firehol_level1", Classification: "malicious", Schedule: "1h",
			Description: "FireHOL level 1: dshield, feodo, fullbogons and Spamhaus DROP. Contains bogons such as 10.0.0.0/8: block it on the internet side only.",
		},
		{
			Name: "firehol_level2", URL: firehol + "firehol_level2.netset", Format: FormatList,
			Tag: "firehol_level2", Classification: "suspicious", Schedule: "1h",
			Description: "FireHOL level 2: blocklist.de, dshield 1 day and greensnow; attacks seen in the last 48 hours.",
		},
		{
			Name: "firehol_level3", URL: firehol + "firehol_level3.netset", Format: FormatList,
			Tag: "firehol_level3", Classification: "suspicious", Schedule: "6h",
			Description: "FireHOL level 3: bruteforceblocker, ciarmy, dshield 30 days, vxvault; attacks over the last 30 days.",
		},
		{
			Name: "spamhaus_drop", URL: "https://www.spamhaus.org/drop/drop.txt", Format: FormatSpamhaus,
			Tag: "spamhaus_drop", Classification: "malicious", Schedule: "12h",
			Description: "Spamhaus DROP (text): hijacked and criminal netblocks. Terms: https://www.spamhaus.org/drop/terms/",
		},
		{
			Name: "spamhaus_drop_v4_json", URL: "https://www.spamhaus.org/drop/drop_v4.json", Format: FormatSpamhaus,
			Tag: "spamhaus_drop", Classification: "malicious", Schedule: "12h",
			Description: "Spamhaus DROP IPv4 (JSON lines). Terms: https://www.spamhaus.org/drop/terms/",
		},
		{
			Name: "spamhaus_drop_v6_json", URL: "https://www.spamhaus.org/drop/drop_v6.json", Format: FormatSpamhaus,
			Tag: "spamhaus_drop", Classification: "malicious", Schedule: "12h",
			Description: "Spamhaus DROP IPv6 (JSON lines). Terms: https://www.spamhaus.org/drop/terms/",
		},
		{
			Name: "spamhaus_dropv6", URL: "https://www.spamhaus.org/drop/dropv6.txt", Format: FormatSpamhaus,
			Tag: "spamhaus_drop", Classification: "malicious", Schedule: "12h",
			Description: "Spamhaus DROPv6 (text). Terms: https://www.spamhaus.org/drop/terms/",
		},
		{
			Name: "spamhaus_edrop", URL: "https://www.spamhaus.org/drop/edrop.txt", Format: FormatSpamhaus,
			Tag: "spamhaus_drop", Classification: "malicious", Schedule: "12h",
			Description: "Spamhaus EDROP (legacy; merged into DROP in 2024, kept for older setups). Terms: https://www.spamhaus.org/drop/terms/",
		},
		{
			Name: "ipsum", URL: "https://raw.githubusercontent.com/stamparm/ipsum/master/ipsum.txt", Format: FormatIPsum,
			Tag: "ipsum", Classification: "suspicious", Schedule: "24h",
			Description: "IPsum: addresses on 30+ public blocklists with the number of lists; set MinCount (e.g. 3) to cut false positives.",
		},
		{
			Name: "tor_exits", URL: "https://check.torproject.org/torbulkexitlist", Format: FormatList,
			Tag: "tor_exit", Classification: "unknown", Schedule: "1h",
			Description: "Tor Project bulk exit list: current Tor exit relays. Anonymiser, not malicious by itself.",
		},
		{
			Name: "blocklist_de_all", URL: "https://lists.blocklist.de/lists/all.txt", Format: FormatList,
			Tag: "blocklist_de", Classification: "suspicious", Schedule: "1h",
			Description: "blocklist.de all: addresses reported for attacks on SSH, mail, FTP, web and other services in the last 48 hours.",
		},
		{
			Name: "dshield_block", URL: "https://feeds.dshield.org/block.txt", Format: FormatDShield,
			Tag: "dshield", Classification: "suspicious", Schedule: "1h",
			Description: "DShield top 20 attacking /24s. Licence CC BY-NC-SA 2.5: non-commercial use.",
		},
	}
}
