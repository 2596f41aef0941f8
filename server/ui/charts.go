package ui

import (
	"fmt"
	"html"
	"html/template"
	"strconv"
	"strings"

	"github.com/muninn/muninn/server/store"
)

// Charts are hand-written inline SVG: no script, no library, readable by
// screen readers through role="img", a title and a data table fallback.

// columnChart draws one vertical bar per day (a time series).
func columnChart(title string, bs []store.Bucket) template.HTML {
	return columnChartOf(title, "day", bs)
}

// columnChartOf draws one vertical bar per bucket of a time series whose
// buckets are a unit ("day", "hour").
func columnChartOf(title, unit string, bs []store.Bucket) template.HTML {
	const w, h, top, bottom = 720.0, 180.0, 6.0, 26.0
	var max int64
	var total int64
	for _, b := range bs {
		max = maxInt(max, b.Count)
		total += b.Count
	}
	var sb strings.Builder
	fmt.Fprintf(&sb, `<svg class="chart columns" viewBox="0 0 %g %g" role="img" aria-label="%s: %d in total">`,
		w, h, html.EscapeString(title), total)
	fmt.Fprintf(&sb, `<title>%s</title>`, html.EscapeString(title))
	if len(bs) > 0 {
		bw := w / float64(len(bs))
		for i, b := range bs {
			bh := 0.0
			if max > 0 {
				bh = float64(b.Count) / float64(max) * (h - bottom - top)
			}
			x := float64(i) * bw
			fmt.Fprintf(&sb, `<rect class="bar" x="%.1f" y="%.1f" width="%.1f" height="%.1f"><title>%s: %d</title></rect>`,
				x+1, h-bottom-bh, bw-2, bh, html.EscapeString(b.Label), b.Count)
			switch {
			case i == len(bs)-1:
				fmt.Fprintf(&sb, `<text class="axis" x="%g" y="%g" text-anchor="end">%s</text>`, w, h-5, html.EscapeString(b.Label))
			case i%5 == 0 && i < len(bs)-5:
				fmt.Fprintf(&sb, `<text class="axis" x="%.1f" y="%g">%s</text>`, x+1, h-5, html.EscapeString(b.Label))
			}
		}
	}
	fmt.Fprintf(&sb, `<line class="gridline" x1="0" x2="%g" y1="%g" y2="%g"/>`, w, top, top)
	fmt.Fprintf(&sb, `</svg><p class="muted small">%d in total; the dashed line is the busiest %s, %s.</p>`, total, unit, strconv.FormatInt(max, 10))
	return template.HTML(sb.String())
}

// barChart draws one horizontal bar per bucket (a top-N list).
func barChart(title string, bs []store.Bucket) template.HTML {
	if len(bs) == 0 {
		return template.HTML(`<p class="muted">No data yet.</p>`)
	}
	const w, row, labelW = 330.0, 22.0, 150.0
	h := row * float64(len(bs))
	var max int64
	for _, b := range bs {
		max = maxInt(max, b.Count)
	}
	var sb strings.Builder
	fmt.Fprintf(&sb, `<svg class="chart" viewBox="0 0 %g %g" role="img" aria-label="%s">`, w, h, html.EscapeString(title))
	fmt.Fprintf(&sb, `<title>%s</title>`, html.EscapeString(title))
	for i, b := range bs {
		y := float64(i) * row
		bw := float64(b.Count) / float64(max) * (w - labelW - 45)
		label := b.Label
		if r := []rune(label); len(r) > 21 {
			label = string(r[:20]) + "…"
		}
		fmt.Fprintf(&sb, `<text class="label" x="0" y="%.1f">%s</text>`, y+15, html.EscapeString(label))
		fmt.Fprintf(&sb, `<rect class="bar" x="%g" y="%.1f" width="%.1f" height="%g"><title>%s: %d</title></rect>`,
			labelW, y+3, maxF(bw, 1), row-6, html.EscapeString(b.Label), b.Count)
		fmt.Fprintf(&sb, `<text class="value" x="%.1f" y="%.1f">%d</text>`, labelW+maxF(bw, 1)+4, y+15, b.Count)
	}
	sb.WriteString(`</svg>`)
	return template.HTML(sb.String())
}

func maxInt(a, b int64) int64 {
	if a > b {
		return a
	}
	return b
}

func maxF(a, b float64) float64 {
	if a > b {
		return a
	}
	return b
}
