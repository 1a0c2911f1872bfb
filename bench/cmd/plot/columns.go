package main

import (
	"fmt"
	"html"
	"math"
	"strings"
)

// hbar is one strategy's bar in one column.
type hbar struct {
	v    float64 // bar length
	dot  float64 // a dot at this value (p50 on a latency bar); NaN: none
	mark float64 // a short vertical tick (a bound, an ideal); NaN: none
	text string  // label right of the bar
	bad  bool    // drawn in the warning colour
}

// column is one quantity, a bar per row, with its own scale.
type column struct {
	title string
	log   bool    // log scale (latencies)
	top   float64 // scale maximum; 0: from the data
	ref   float64 // a dashed reference line across the column; 0: none
	bars  []hbar  // one per row, in row order
}

// group is a titled block of rows drawn in every column.
type group struct {
	title string
	rows  []string // row labels
	tips  []string // hover text per row
	cols  []column
}

const (
	colW   = 230 // width of one column's plot
	colGap = 70  // room for a bar's label
)

// columnChart draws groups of rows, each row a strategy, each column a
// quantity with its own scale; every group has the same columns.
func columnChart(title, subtitle, foot string, groups []group) string {
	ncol := len(groups[0].cols)
	lab := 130
	w := lab + ncol*(colW+colGap) + 10
	h := 60
	for _, g := range groups {
		h += 44 + len(g.rows)*rowH + 20
	}
	h += 30
	b := header(w, h)
	fmt.Fprintf(b, `<text x="10" y="22" font-size="15" font-weight="bold">%s</text>`+"\n", html.EscapeString(title))
	fmt.Fprintf(b, `<text x="10" y="40" fill="#555" font-size="11">%s</text>`+"\n", html.EscapeString(subtitle))
	y := 60
	for _, g := range groups {
		if g.title != "" {
			fmt.Fprintf(b, `<text x="10" y="%d" font-weight="bold">%s</text>`+"\n", y+14, html.EscapeString(g.title))
		}
		y += 24
		for ci, c := range g.cols {
			x0 := float64(lab + ci*(colW+colGap))
			fmt.Fprintf(b, `<text x="%.1f" y="%d" font-size="11" fill="#333">%s</text>`+"\n", x0, y+12, html.EscapeString(c.title))
		}
		y += 20
		for ri, label := range g.rows {
			cy := float64(y) + rowH/2
			tip := ""
			if ri < len(g.tips) {
				tip = g.tips[ri]
			}
			fmt.Fprintf(b, `<text x="%d" y="%.1f" text-anchor="end" dominant-baseline="middle">%s<title>%s</title></text>`+"\n",
				lab-6, cy, html.EscapeString(label), html.EscapeString(tip))
			for ci, c := range g.cols {
				drawBar(b, float64(lab+ci*(colW+colGap)), y, c, c.bars[ri])
			}
			y += rowH
		}
		for ci, c := range g.cols {
			drawAxis(b, float64(lab+ci*(colW+colGap)), y-len(g.rows)*rowH, y, c)
		}
		y += 20
	}
	fmt.Fprintf(b, `<text x="10" y="%d" fill="#555" font-size="11">%s</text>`+"\n", h-12, html.EscapeString(foot))
	b.WriteString("</svg>\n")
	return b.String()
}

// scale returns the column's value → x offset mapping and its range.
func (c column) scale() (func(float64) float64, float64, float64) {
	lo, hi := math.Inf(1), 0.0
	for _, br := range c.bars {
		for _, v := range []float64{br.v, br.dot, br.mark} {
			if !math.IsNaN(v) && v > 0 {
				lo, hi = min(lo, v), max(hi, v)
			}
		}
	}
	hi = max(hi, c.ref)
	if c.top > 0 {
		hi = c.top
	}
	if c.log {
		dlo, dhi := math.Floor(math.Log10(lo)), math.Ceil(math.Log10(hi))
		if dhi <= dlo {
			dhi = dlo + 1
		}
		return func(v float64) float64 {
			return (math.Log10(min(max(v, math.Pow(10, dlo)), math.Pow(10, dhi))) - dlo) / (dhi - dlo) * colW
		}, dlo, dhi
	}
	step := niceStep(hi / 4)
	top := math.Ceil(hi/step) * step
	return func(v float64) float64 { return min(v, top) / top * colW }, 0, top
}

func drawBar(b *strings.Builder, x0 float64, y int, c column, br hbar) {
	x, _, _ := c.scale()
	cy := float64(y) + rowH/2
	fill := "#66c2a5"
	if br.bad {
		fill = "#fc8d62"
	}
	fmt.Fprintf(b, `<rect x="%.1f" y="%d" width="%.1f" height="%d" fill="%s"/>`+"\n", x0, y+3, max(x(br.v), 1), rowH-6, fill)
	if !math.IsNaN(br.dot) {
		fmt.Fprintf(b, `<circle cx="%.1f" cy="%.1f" r="3" fill="black"/>`+"\n", x0+x(br.dot), cy)
	}
	if !math.IsNaN(br.mark) {
		fmt.Fprintf(b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#e41a1c" stroke-width="2"/>`+"\n", x0+x(br.mark), y+1, x0+x(br.mark), y+rowH-1)
	}
	if room := colW + colGap - x(br.v) - 8; float64(len(br.text))*5.5 > room {
		// no room right of the bar: inside its end
		fmt.Fprintf(b, `<text x="%.1f" y="%.1f" text-anchor="end" dominant-baseline="middle" font-size="10" fill="black">%s</text>`+"\n",
			x0+x(br.v)-4, cy, html.EscapeString(br.text))
		return
	}
	fmt.Fprintf(b, `<text x="%.1f" y="%.1f" dominant-baseline="middle" font-size="10" fill="#333">%s</text>`+"\n",
		x0+x(br.v)+4, cy, html.EscapeString(br.text))
}

func drawAxis(b *strings.Builder, x0 float64, y0, y1 int, c column) {
	x, lo, hi := c.scale()
	var ticks []float64
	if c.log {
		for d := lo; d <= hi; d++ {
			ticks = append(ticks, math.Pow(10, d))
		}
	} else {
		step := niceStep(hi / 4)
		for k := 0; float64(k)*step <= hi+1e-9; k++ {
			ticks = append(ticks, float64(k)*step)
		}
	}
	for _, t := range ticks {
		label := fmt.Sprintf("%.4g", t)
		if c.log {
			label = fmtMS(t)
		}
		fmt.Fprintf(b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#ccc" stroke-dasharray="2,3"/>`+"\n", x0+x(t), y0, x0+x(t), y1)
		fmt.Fprintf(b, `<text x="%.1f" y="%d" text-anchor="middle" fill="#555" font-size="10">%s</text>`+"\n", x0+x(t), y1+12, label)
	}
	if c.ref > 0 {
		fmt.Fprintf(b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#e41a1c" stroke-dasharray="4,3"/>`+"\n", x0+x(c.ref), y0, x0+x(c.ref), y1)
	}
}
