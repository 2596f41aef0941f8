// Package onetruth holds the proof of one truth (issue 10): tests, no code.
//
// TestOneTruth assembles a server as muninn serve does (store, in-memory index,
// render hub, API with every response validated against the contract, UI) on a
// clock that stands still between rounds, then, round after round, builds a
// random universe through the API (nested IPv4 and IPv6 prefixes in the
// documentation ranges, several ingest sources, tags, classifications, notes,
// TTLs already over, over in a later round or far off, manual overrides with
// add_tags, suppress_tags, classification, note and expiry, empty overrides,
// override deletions, ruleset changes) and advances the clock so that
// assertions expire. After each round it reads every stored prefix with its
// live assertions from PostgreSQL, resolves the view of random addresses and
// of every stored prefix with server/resolve (the model), and checks that
// these agree with it:
//
//   - GET /ips/{ip} (404 when nothing live contains the address) and
//     GET /networks/{p} for every stored prefix;
//   - search by each tag and classification and by random filter combinations
//     (source patterns, within), page by page, in address order;
//   - the CSV, JSON, NDJSON and ClickHouse exports row by row, and the
//     ClickHouse reading: the longest match over its rows gives each address
//     the classification and tags GET /ips gives;
//   - explain (deciding rule, action, facts) for each ruleset;
//   - each render rule's exact set (waiting on the render's long poll for it
//     to reach the state), the delta a bouncer holding the previous round's
//     render gets, and the deny list;
//   - what a starting bouncer gets (GET /bouncer/render), the named list's
//     prefixes and the CrowdSec stream's bans;
//   - the UI's address pages and its override impact preview, for addresses
//     and networks;
//   - a second server process on the same database: its lookups and renders,
//     and that both processes give each render the same version.
//
// The seed is logged; MUNINN_ONETRUTH_SEED=<seed> replays a run. The named
// tests pin issue 10's cases that server/api's tests do not already cover.
package onetruth
