package api

import "context"

// AccessNote is what one request's access log line says beyond HTTP itself:
// who called and, when the answer's body does not say it, why the request
// failed. The HTTP layer puts an empty one in every request's context
// (WithAccessNote) and logs it when the request is done; WithPrincipal and
// WithBouncer fill in the caller, so whoever authenticates a request names it
// without knowing about the log. It is written and read on the request's own
// goroutine only.
type AccessNote struct {
	// Principal is "user:<name>", "token:<name>" or "bouncer:<name>": a
	// name, never a secret; "" for an anonymous request.
	Principal string
	// Reason is why the request failed, as a handler noted it (NoteReason);
	// "" when the answer's problem body says it.
	Reason string
	// Route is the pattern of the /api/v1 operation the contract matched,
	// relative to where the API is mounted (e.g. "/ips/{address}"): a
	// request the contract refuses never reaches the router that would
	// otherwise record it.
	Route string
}

type accessNoteKey struct{}

// WithAccessNote returns ctx carrying a fresh note, and the note.
func WithAccessNote(ctx context.Context) (context.Context, *AccessNote) {
	n := &AccessNote{}
	return context.WithValue(ctx, accessNoteKey{}, n), n
}

// AccessNoteFrom returns the note of the request behind ctx, or nil.
func AccessNoteFrom(ctx context.Context) *AccessNote { return accessNote(ctx) }

func accessNote(ctx context.Context) *AccessNote {
	n, _ := ctx.Value(accessNoteKey{}).(*AccessNote)
	return n
}

// noteCaller records the caller of the request behind ctx, if it has a note.
func noteCaller(ctx context.Context, kind, name string) {
	if n := accessNote(ctx); n != nil {
		n.Principal = kind + ":" + name
	}
}

// NoteReason records why the request behind ctx failed, for an answer whose
// body is not a problem (a UI error page); a no-op without a note.
func NoteReason(ctx context.Context, reason string) {
	if n := accessNote(ctx); n != nil {
		n.Reason = reason
	}
}
