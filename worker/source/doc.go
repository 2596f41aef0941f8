// Package source groups the outside-world lookups the worker uses: threat feeds
// (feed), geolocation and ASN databases (geo), RDAP and whois registration data
// (rdap) and reverse DNS (rdns). Each subpackage is pure: it talks to the
// outside world behind small types and never touches the database.
package source
