// Package apigen is the server code oapi-codegen generates from openapi/openapi.yaml.
// Never edit it by hand: run `make generate`.
package apigen

//go:generate go tool oapi-codegen -config ../../../openapi/server.cfg.yaml ../../../openapi/openapi.yaml
