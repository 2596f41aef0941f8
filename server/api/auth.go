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

// Authenticator checks bearer tokens and bouncer keys. Lookups are cached for
// cacheTTL so a busy client costs one query per cache period (a parked long
// poll of a bouncer none); revocation or a change through this process drops
// the cache at once (Forget), through other processes it takes effect within
// cacheTTL.
type Authenticator struct {
	store    *store.Store
	now      func() time.Time
	tokens   credCache[store.Token]
	bouncers credCache[store.Bouncer]
}

// credCache caches the answers of one credential lookup by secret hash,
// missing credentials (ErrNotFound) included, for cacheTTL; concurrent
// misses of one hash share one query.
//
// With bulk set, a credential used less often than every cacheTTL (a
// bouncer's long poll comes back every 30 s) still costs no query of its
// own: when entries are stale, one query refreshes every cached one.
type credCache[V any] struct {
	lookup func(ctx context.Context, hash []byte) (V, error)
	bulk   func(ctx context.Context, hashes [][]byte) (map[string]V, error)
	mu     sync.Mutex
	m      map[string]cached[V]
	flight singleflight.Group
}

type cached[V any] struct {
	v       V
	err     error // store.ErrNotFound, or nil
	fetched time.Time
	touched time.Time
}

// cacheTTL bounds how stale a cached credential may be: a revocation through
// another process takes effect within it.
const cacheTTL = 5 * time.Second

// maxCached bounds each cache; past it the cache starts over.
const maxCached = 1 << 17

// get returns the cached answer for hash key as of now, asking the store when
// there is none younger than cacheTTL.
func (c *credCache[V]) get(ctx context.Context, key string, now time.Time) (cached[V], error) {
	c.mu.Lock()
	e, ok := c.m[key]
	c.mu.Unlock()
	if ok && now.Sub(e.fetched) <= cacheTTL {
		return e, nil
	}
	if ok && c.bulk != nil {
		if err := c.refresh(ctx, now); err != nil {
			return cached[V]{}, err
		}
		c.mu.Lock()
		e, ok = c.m[key]
		c.mu.Unlock()
		if ok && now.Sub(e.fetched) <= cacheTTL {
			return e, nil
		}
	}
	// One query per credential at a time: when a busy credential's entry
	// expires, the requests that arrive before the answer wait for it
	// instead of each asking the database.
	v, err, _ := c.flight.Do(key, func() (any, error) {
		v, err := c.lookup(context.WithoutCancel(ctx), []byte(key))
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return nil, err
		}
		c.mu.Lock()
		defer c.mu.Unlock()
		fresh := cached[V]{v: v, err: err, fetched: now, touched: c.m[key].touched}
		if c.m == nil || len(c.m) > maxCached {
			c.m = map[string]cached[V]{}
		}
		c.m[key] = fresh
		return fresh, nil
	})
	if err != nil {
		return cached[V]{}, err
	}
	return v.(cached[V]), nil
}

// refresh asks bulk, once for every caller that arrives meanwhile, for each
// entry fetched more than cacheTTL/2 before now, and stores the answers;
// a credential that is gone is dropped (asked alone when it comes again).
func (c *credCache[V]) refresh(ctx context.Context, now time.Time) error {
	_, err, _ := c.flight.Do("\x00refresh", func() (any, error) {
		c.mu.Lock()
		var hashes [][]byte
		for k, e := range c.m {
			if now.Sub(e.fetched) > cacheTTL/2 && e.err == nil {
				hashes = append(hashes, []byte(k))
			}
		}
		c.mu.Unlock()
		if len(hashes) == 0 {
			return nil, nil
		}
		found, err := c.bulk(context.WithoutCancel(ctx), hashes)
		if err != nil {
			return nil, err
		}
		c.mu.Lock()
		defer c.mu.Unlock()
		for _, h := range hashes {
			k := string(h)
			if v, ok := found[k]; ok {
				c.m[k] = cached[V]{v: v, fetched: now, touched: c.m[k].touched}
			} else {
				delete(c.m, k)
			}
		}
		return nil, nil
	})
	return err
}

// claim reports whether the caller is the first to use hash key at or after
// every, since the last claim: it then writes the credential's last use.
func (c *credCache[V]) claim(key string, now time.Time, every time.Duration) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	cur, ok := c.m[key]
	if !ok || now.Sub(cur.touched) <= every {
		return false
	}
	cur.touched = now
	c.m[key] = cur
	return true
}

func (c *credCache[V]) forget() {
	c.mu.Lock()
	clear(c.m)
	c.mu.Unlock()
}

// NewAuthenticator returns an Authenticator over st.
func NewAuthenticator(st *store.Store, now func() time.Time) *Authenticator {
	return &Authenticator{store: st, now: now,
		tokens:   credCache[store.Token]{lookup: st.TokenByHash},
		bouncers: credCache[store.Bouncer]{lookup: st.BouncerByKeyHash, bulk: st.BouncersByKeyHashes}}
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
	c, err := a.tokens.get(ctx, key, now)
	if err != nil {
		return Principal{}, err
	}
	if c.err != nil {
		return Principal{}, ErrBadToken
	}
	if c.v.ExpiresAt != nil && !c.v.ExpiresAt.After(now) {
		return Principal{}, ErrExpiredToken
	}
	// Last use is written once a minute per token: the request that claims
	// the minute writes it.
	if a.tokens.claim(key, now, time.Minute) {
		if err := a.store.TouchToken(ctx, c.v.ID, now); err != nil {
			return Principal{}, err
		}
	}
	return Principal{Kind: "token", Name: c.v.Name, Role: c.v.Role, ID: c.v.ID}, nil
}

// Bouncer resolves a bouncer key to its bouncer as stored at most cacheTTL
// ago; store.ErrNotFound when no bouncer has it. Fields a request changes
// (last seen, applied versions, the CrowdSec cursor) may be that old: read
// the row when they matter.
func (a *Authenticator) Bouncer(ctx context.Context, key string) (store.Bouncer, error) {
	c, err := a.bouncers.get(ctx, string(store.HashSecret(key)), a.now())
	if err != nil {
		return store.Bouncer{}, err
	}
	return c.v, c.err
}

// Forget drops every cached lookup (after a revocation or a change of a
// bouncer).
func (a *Authenticator) Forget() {
	a.tokens.forget()
	a.bouncers.forget()
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
