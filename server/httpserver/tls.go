package httpserver

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"
)

// CertReloader serves the certificate in a pair of PEM files and reloads it
// when either file's modification time or size changes, so a renewed
// certificate (certbot, an ACME client, cert-manager) is picked up without a
// restart. A pair that does not load (a half-written renewal) keeps the
// previous certificate in use and is retried at the next handshake.
type CertReloader struct {
	certFile, keyFile string
	log               *slog.Logger

	mu    sync.Mutex
	cert  *tls.Certificate
	stamp [2]fileStamp
}

type fileStamp struct {
	mod  time.Time
	size int64
}

func stampOf(path string) (fileStamp, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return fileStamp{}, err
	}
	return fileStamp{fi.ModTime(), fi.Size()}, nil
}

// NewCertReloader loads certFile and keyFile; a pair that does not load is an
// error here, at start.
func NewCertReloader(certFile, keyFile string, log *slog.Logger) (*CertReloader, error) {
	r := &CertReloader{certFile: certFile, keyFile: keyFile, log: log}
	if err := r.load(); err != nil {
		return nil, fmt.Errorf("httpserver: tls: %w", err)
	}
	return r, nil
}

// load reads the pair when its files changed since the last load.
func (r *CertReloader) load() error {
	cs, err := stampOf(r.certFile)
	if err != nil {
		return fmt.Errorf("certificate: %w", err)
	}
	ks, err := stampOf(r.keyFile)
	if err != nil {
		return fmt.Errorf("key: %w", err)
	}
	if r.cert != nil && r.stamp == [2]fileStamp{cs, ks} {
		return nil
	}
	cert, err := tls.LoadX509KeyPair(r.certFile, r.keyFile)
	if err != nil {
		return fmt.Errorf("load %s and %s: %w", r.certFile, r.keyFile, err)
	}
	reloaded := r.cert != nil
	r.cert, r.stamp = &cert, [2]fileStamp{cs, ks}
	if reloaded {
		r.log.Info("Reloaded the TLS certificate.", "cert_file", r.certFile, "not_after", cert.Leaf.NotAfter)
	}
	return nil
}

// GetCertificate implements tls.Config.GetCertificate.
func (r *CertReloader) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.load(); err != nil {
		r.log.Warn("Could not reload the TLS certificate; serving the previous one.", "error", err)
	}
	return r.cert, nil
}

// TLSConfig returns the server's TLS configuration over r: TLS 1.2 or newer,
// Go's default cipher suites.
func (r *CertReloader) TLSConfig() *tls.Config {
	return &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: r.GetCertificate}
}
