package api

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"errors"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/muninn/muninn/server/store"
)

// Roles, least to most privileged.
const (
	RoleReader = "reader"
	RoleWriter = "writer"
	RoleAdmin  = "admin"
)

// RoleRank orders roles; an unknown role ranks below reader.
func RoleRank(role string) int {
	switch role {
	case RoleReader:
		return 1
	case RoleWriter:
		return 2
	case RoleAdmin:
		return 3
	}
	return 0
}

// Principal is who is calling.
type Principal struct {
	// Kind is "token" or "user".
	Kind string
	Name string
	Role string
	ID   int64
}

type principalKey struct{}

// WithPrincipal returns ctx carrying p, and names p in the request's access
// note (AccessNote) when ctx has one.
func WithPrincipal(ctx context.Context, p Principal) context.Context {
	noteCaller(ctx, p.Kind, p.Name)
	return context.WithValue(ctx, principalKey{}, p)
}

// PrincipalFrom returns the caller stored in ctx.
func PrincipalFrom(ctx context.Context) (Principal, bool) {
	p, ok := ctx.Value(principalKey{}).(Principal)
	return p, ok
}

// NewSecret returns a fresh random secret with a readable prefix, e.g. "mnn_…".
func NewSecret(prefix string) string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // crypto/rand.Read never fails on supported platforms
	return prefix + strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b))
}

// TokenPrefix starts every API token.
const TokenPrefix = "mnn_"

// Authenticator checks bearer tokens. Lookups are cached for a few seconds so a
// busy client costs one query per cache period; revocation through this process
// drops the cache at once, other processes within cacheTTL.
type Authenticator struct {
	store *store.Store
	now   func() time.Time

	mu     sync.Mutex
	cache  map[string]cachedToken
	flight singleflight.Group
}

type cachedToken struct {
	tok     store.Token
	err     error
	fetched time.Time
	touched time.Time
}

const cacheTTL = 5 * time.Second

// NewAuthenticator returns an Authenticator over st.
func NewAuthenticator(st *store.Store, now func() time.Time) *Authenticator {
	return &Authenticator{store: st, now: now, cache: map[string]cachedToken{}}
}

// Errors of Authenticate, shown to the caller as the reason.
var (
	ErrNoCredential = errors.New("no credential: send Authorization: Bearer <token>")
	ErrBadToken     = errors.New("the token is not valid")
	ErrExpiredToken = errors.New("the token has expired")
)

// Authenticate resolves a bearer token to its principal.
func (a *Authenticator) Authenticate(ctx context.Context, secret string) (Principal, error) {
	if secret == "" {
		return Principal{}, ErrNoCredential
	}
	key := string(store.HashSecret(secret))
	now := a.now()
	a.mu.Lock()
	c, ok := a.cache[key]
	a.mu.Unlock()
	if !ok || now.Sub(c.fetched) > cacheTTL {
		// One query per token at a time: when a busy token's entry
		// expires, the requests that arrive before the answer wait for it
		// instead of each asking the database.
		v, err, _ := a.flight.Do(key, func() (any, error) {
			tok, err := a.store.TokenByHash(context.WithoutCancel(ctx), []byte(key))
			if err != nil && !errors.Is(err, store.ErrNotFound) {
				return nil, err
			}
			a.mu.Lock()
			defer a.mu.Unlock()
			fresh := cachedToken{tok: tok, err: err, fetched: now, touched: a.cache[key].touched}
			if len(a.cache) > 10000 {
				clear(a.cache)
			}
			a.cache[key] = fresh
			return fresh, nil
		})
		if err != nil {
			return Principal{}, err
		}
		c = v.(cachedToken)
	}
	if c.err != nil {
		return Principal{}, ErrBadToken
	}
	if c.tok.ExpiresAt != nil && !c.tok.ExpiresAt.After(now) {
		return Principal{}, ErrExpiredToken
	}
	// Last use is written once a minute per token: the request that claims
	// the minute writes it.
	a.mu.Lock()
	cur, claimed := a.cache[key], false
	if now.Sub(cur.touched) > time.Minute {
		cur.touched, claimed = now, true
		a.cache[key] = cur
	}
	a.mu.Unlock()
	if claimed {
		if err := a.store.TouchToken(ctx, c.tok.ID, now); err != nil {
			return Principal{}, err
		}
	}
	return Principal{Kind: "token", Name: c.tok.Name, Role: c.tok.Role, ID: c.tok.ID}, nil
}

// Forget drops every cached lookup (after a revocation).
func (a *Authenticator) Forget() {
	a.mu.Lock()
	clear(a.cache)
	a.mu.Unlock()
}

// CreateToken makes a token with a fresh secret and returns both; the secret is
// never stored, only its hash.
func CreateToken(ctx context.Context, st *store.Store, name, role string, expiresAt *time.Time, actor string) (store.Token, string, error) {
	secret := NewSecret(TokenPrefix)
	t, err := st.CreateToken(ctx, name, role, expiresAt, store.HashSecret(secret), actor)
	if err != nil {
		return store.Token{}, "", err
	}
	return t, secret, nil
}
