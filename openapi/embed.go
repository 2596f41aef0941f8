// Package openapi embeds the API contract so the server can serve the very text
// its code was generated from.
package openapi

import _ "embed"

// Spec is openapi.yaml, the one contract of /api/v1.
//
//go:embed openapi.yaml
var Spec []byte
