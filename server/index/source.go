package index

import (
	"context"
	"fmt"

	"github.com/muninn/muninn/server/policy"
	"github.com/muninn/muninn/server/render"
)

// RenderSource returns the index as the render hub's fact source
// (render.Options.Source). Its Snapshot waits until the first full load is in
// place: a hub must never render, and bouncers never enforce, the empty index of
// a process that is still loading.
func (ix *Index) RenderSource() render.Source { return renderSource{ix} }

type renderSource struct{ ix *Index }

func (r renderSource) Snapshot(ctx context.Context, _ bool) (render.FactSnapshot, error) {
	select {
	case <-r.ix.Ready():
	case <-ctx.Done():
		return nil, fmt.Errorf("index: wait for the first load: %w", ctx.Err())
	}
	return factSnap{r.ix.Snapshot()}, nil
}

func (r renderSource) Changed() <-chan struct{} { return r.ix.Changed() }

// factSnap is a Snap as a render.FactSnapshot.
type factSnap struct{ *Snap }

func (f factSnap) Facts(withGeo bool) *policy.Facts { return f.Entries(withGeo) }
