// Package apiclient is the client oapi-codegen generates from openapi/openapi.yaml for
// the bouncer protocol (tag bouncer: render long poll, heartbeat, honeypot reports).
// Never edit it by hand: run `make generate`. It imports nothing of the server.
package apiclient

//go:generate go tool oapi-codegen -config ../../openapi/bouncer-client.cfg.yaml ../../openapi/openapi.yaml
