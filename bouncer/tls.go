package bouncer

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"os"
)

// HTTPClient returns the HTTP client for the server: Go's default transport
// (dial and TLS handshake timeouts, TCP keep-alives, proxy from the
// environment), trusting the PEM certificates in caFile as well as the
// system's roots when caFile is set (a private CA, or the server's
// self-signed certificate).
func HTTPClient(caFile string) (*http.Client, error) {
	t := http.DefaultTransport.(*http.Transport).Clone()
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("bouncer: ca file: %w", err)
		}
		pool, err := x509.SystemCertPool()
		if err != nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, errors.New("bouncer: ca file " + caFile + ": no PEM certificate in it")
		}
		t.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: pool}
	}
	return &http.Client{Transport: t}, nil
}
