// Package feedsgen is the server code oapi-codegen generates from
// openapi/feeds.yaml (feeds and jobs). Never edit it by hand: run
// `make generate`.
package feedsgen

//go:generate go tool oapi-codegen -config ../../../openapi/feeds.cfg.yaml ../../../openapi/feeds.yaml
