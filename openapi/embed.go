// Package openapi embeds the API contract, openapi.yaml, so the server can serve
// the very text it was generated from.
package openapi

import _ "embed"

// Spec is openapi.yaml.
//
//go:embed openapi.yaml
var Spec []byte
