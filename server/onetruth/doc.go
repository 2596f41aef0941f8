// Package onetruth holds the proof of one truth (issue 10): a randomised
// differential test that builds random universes of nested prefixes through the
// API of a server assembled as muninn serve assembles it, and checks that every
// answer (lookups, search, exports and the ClickHouse reading of them, explain,
// renders, deny and named lists, the CrowdSec stream) agrees with the one
// resolver, server/resolve, applied to what PostgreSQL holds. The package has no
// code outside its tests.
package onetruth
