// Package openapi embeds the API contracts so the server can serve the very text
// its code was generated from: openapi.yaml (the core API), feeds.yaml (feeds and
// jobs) and bouncer.yaml (the bouncer protocol).
package openapi

import "embed"

// Files holds openapi.yaml, feeds.yaml and bouncer.yaml.
//
//go:embed openapi.yaml feeds.yaml bouncer.yaml
var Files embed.FS
