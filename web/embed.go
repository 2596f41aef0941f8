// Package web embeds the web UI's templates and static files; server/ui
// renders them. There is no build step: the files are served as written.
package web

import "embed"

// FS holds templates/*.html and static/*.
//
//go:embed templates/*.html static/*
var FS embed.FS
