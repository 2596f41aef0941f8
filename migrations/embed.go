// Package migrations embeds muninn's schema migrations: NNNN_name.up.sql and
// NNNN_name.down.sql, applied in order, one transaction each, by server/store.
package migrations

import "embed"

// FS holds every migration file.
//
//go:embed *.sql
var FS embed.FS
