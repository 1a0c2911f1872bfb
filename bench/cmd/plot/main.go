// Command plot draws the benchmark plots of BENCHMARKS.md as hand-written
// SVG (standard library only):
//
//	go run ./bench/cmd/plot -out docs \
//	    -tsv bench/results/small-pinned.tsv,bench/results/slow1k-pinned.tsv,bench/results/post64k-pinned.tsv \
//	    -sim bench/results/sim.json
//
// It writes docs/cpu-us-per-request.svg (CPU µs per request per proxy from
// the wrk harness's tsv files: a bar at the median of the reps, a whisker
// from min to max; one panel per file) and docs/sim-slow-backend.svg (the
// slow-backend simulation of bench/cmd/sim -json: p99 latency on a log
// scale and the share sent to the slow backend, per strategy) and one plot
// per other workload of bench/cmd/sim: docs/sim-slow-midrun.svg,
// sim-capacities.svg, sim-hotkeys.svg and sim-herd.svg.
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"html"
	"log"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

func main() {
	out := flag.String("out", "docs", "output directory")
	tsvs := flag.String("tsv", "", "comma-separated harness tsv files (one panel each)")
	simJSON := flag.String("sim", "", "JSON written by bench/cmd/sim -json")
	flag.Parse()
	if err := os.MkdirAll(*out, 0o755); err != nil {
		log.Fatal(err)
	}
	if *tsvs != "" {
		var panels []panel
		for _, f := range strings.Split(*tsvs, ",") {
			p, err := readTSV(f)
			if err != nil {
				log.Fatal(err)
			}
			panels = append(panels, p)
		}
		write(filepath.Join(*out, "cpu-us-per-request.svg"), cpuChart(panels))
	}
	if *simJSON != "" {
		b, err := os.ReadFile(*simJSON)
		if err != nil {
			log.Fatal(err)
		}
		var s simOutput
		if err := json.Unmarshal(b, &s); err != nil {
			log.Fatal(err)
		}
		write(filepath.Join(*out, "sim-slow-backend.svg"), simChart(s))
		var w simWorkloads
		if err := json.Unmarshal(b, &w); err != nil {
			log.Fatal(err)
		}
		workloadCharts(*out, w)
	}
}

func write(name, svg string) {
	if err := os.WriteFile(name, []byte(svg), 0o644); err != nil {
		log.Fatal(err)
	}
	fmt.Fprintln(os.Stderr, "wrote", name)
}

// bar is one target's figure: the median with its min and max.
type bar struct {
	label       string
	med, lo, hi float64
	n           int
	highlight   bool
}

// panel is one tsv file.
type panel struct {
	title string
	bars  []bar
}

// readTSV reads a run.sh tsv file: cpu_us_req per target, in order of
// first appearance.
func readTSV(name string) (panel, error) {
	f, err := os.Open(name)
	if err != nil {
		return panel{}, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	idx := map[string]int{}
	vals := map[string][]float64{}
	var order []string
	var workload, mode string
	for first := true; sc.Scan(); first = false {
		fs := strings.Split(sc.Text(), "\t")
		if first {
			for i, h := range fs {
				idx[h] = i
			}
			continue
		}
		if len(fs) < len(idx) {
			continue
		}
		t := fs[idx["target"]]
		v, err := strconv.ParseFloat(fs[idx["cpu_us_req"]], 64)
		if err != nil || v <= 0 {
			continue
		}
		workload, mode = fs[idx["workload"]], fs[idx["mode"]]
		if _, ok := vals[t]; !ok {
			order = append(order, t)
		}
		vals[t] = append(vals[t], v)
	}
	if err := sc.Err(); err != nil {
		return panel{}, err
	}
	p := panel{title: fmt.Sprintf("%s, %s (%s)", workload, mode, filepath.Base(name))}
	for _, t := range order {
		v := slices.Clone(vals[t])
		slices.Sort(v)
		med := v[len(v)/2]
		if len(v)%2 == 0 {
			med = (v[len(v)/2-1] + v[len(v)/2]) / 2
		}
		p.bars = append(p.bars, bar{label: t, med: med, lo: v[0], hi: v[len(v)-1], n: len(v), highlight: t == "tinylb"})
	}
	return p, nil
}

const (
	width    = 760
	labelW   = 150
	rightPad = 70
	rowH     = 22
)

func header(w, h int) *strings.Builder {
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n", w, h, w, h)
	fmt.Fprintf(&b, `<rect width="%d" height="%d" fill="white"/>`+"\n", w, h)
	return &b
}

// cpuChart is a horizontal bar chart per panel, on a common scale.
func cpuChart(panels []panel) string {
	var top float64
	for _, p := range panels {
		for _, b := range p.bars {
			top = max(top, b.hi)
		}
	}
	step := niceStep(top / 5)
	top = math.Ceil(top/step) * step
	plotW := float64(width - labelW - rightPad)
	x := func(v float64) float64 { return labelW + v/top*plotW }
	h := 50
	for _, p := range panels {
		h += 24 + len(p.bars)*rowH + 26
	}
	h += 24
	b := header(width, h)
	fmt.Fprintf(b, `<text x="%d" y="22" font-size="15" font-weight="bold">Proxy CPU µs per request (lower is better): median of the reps, whisker min–max</text>`+"\n", 10)
	y := 50
	for _, p := range panels {
		fmt.Fprintf(b, `<text x="10" y="%d" font-weight="bold">%s</text>`+"\n", y+14, html.EscapeString(p.title))
		y += 24
		y0 := y
		for _, br := range p.bars {
			fill := "#8da0cb"
			if br.highlight {
				fill = "#e41a1c"
			}
			cy := float64(y) + rowH/2
			fmt.Fprintf(b, `<text x="%d" y="%.1f" text-anchor="end" dominant-baseline="middle">%s</text>`+"\n", labelW-6, cy, html.EscapeString(br.label))
			fmt.Fprintf(b, `<rect x="%d" y="%d" width="%.1f" height="%d" fill="%s"/>`+"\n", labelW, y+3, x(br.med)-labelW, rowH-6, fill)
			fmt.Fprintf(b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="black"/>`+"\n", x(br.lo), cy, x(br.hi), cy)
			for _, v := range []float64{br.lo, br.hi} {
				fmt.Fprintf(b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="black"/>`+"\n", x(v), cy-4, x(v), cy+4)
			}
			fmt.Fprintf(b, `<text x="%.1f" y="%.1f" dominant-baseline="middle" fill="#333">%.1f</text>`+"\n", x(br.hi)+5, cy, br.med)
			y += rowH
		}
		// axis
		for _, t := range ticks(top, step) {
			fmt.Fprintf(b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#ccc" stroke-dasharray="2,3"/>`+"\n", x(t), y0, x(t), y)
			fmt.Fprintf(b, `<text x="%.1f" y="%d" text-anchor="middle" fill="#555" font-size="10">%g</text>`+"\n", x(t), y+12, t)
		}
		y += 26
	}
	fmt.Fprintf(b, `<text x="10" y="%d" fill="#555" font-size="11">Target pinned alone on one core, GOMAXPROCS=1 / 1 worker; wrk and 3 Go backends on the other core. tinylb in red.</text>`+"\n", h-12)
	b.WriteString("</svg>\n")
	return b.String()
}

// niceStep rounds v up to 1, 2 or 5 × a power of ten.
func niceStep(v float64) float64 {
	if v <= 0 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*p >= v {
			return m * p
		}
	}
	return 10 * p
}

func ticks(top, step float64) []float64 {
	var t []float64
	for v := 0.0; v <= top+1e-9; v += step {
		t = append(t, v)
	}
	return t
}

// simOutput is the part of bench/cmd/sim's JSON the plot reads.
type simOutput struct {
	Config struct {
		Backends int
		Factor   float64
	}
	Runs []struct {
		Policy    string
		Note      string
		Load      float64
		SlowShare float64
		P50, P99  float64
		SlowUtil  float64
	}
}

// simChart draws, for each load, p99 (log scale) and the slow share per
// strategy side by side.
func simChart(s simOutput) string {
	var loads []float64
	for _, r := range s.Runs {
		if !slices.Contains(loads, r.Load) {
			loads = append(loads, r.Load)
		}
	}
	lo, hi := math.Inf(1), 0.0
	for _, r := range s.Runs {
		lo, hi = min(lo, r.P50), max(hi, r.P99)
	}
	dlo, dhi := math.Floor(math.Log10(lo)), math.Ceil(math.Log10(hi))
	const w = 900
	const lab = 120
	const pw = 330 // each plot's width
	x1 := func(v float64) float64 { return lab + (math.Log10(v)-dlo)/(dhi-dlo)*pw }
	x2 := func(share float64) float64 { return lab + pw + 90 + share/0.2*float64(pw-40) } // 0..20 %
	perLoad := 0
	for _, r := range s.Runs {
		if r.Load == loads[0] {
			perLoad++
		}
	}
	h := 60 + len(loads)*(40+perLoad*rowH+30) + 30
	b := header(w, h)
	fmt.Fprintf(b, `<text x="10" y="22" font-size="15" font-weight="bold">Simulation: %d backends, one %.0f× slower (bench/cmd/sim)</text>`+"\n", s.Config.Backends, s.Config.Factor)
	fmt.Fprintf(b, `<text x="10" y="40" fill="#555" font-size="11">Left: latency p50 (dot) and p99 (bar end), ms, log scale. Right: share of requests sent to the slow backend (even share = 10 %%; capacity share = 1.1 %%).</text>`+"\n")
	y := 60
	for _, load := range loads {
		fmt.Fprintf(b, `<text x="10" y="%d" font-weight="bold">Load %.0f%% of capacity</text>`+"\n", y+14, load*100)
		y += 24
		y0 := y
		for _, r := range s.Runs {
			if r.Load != load {
				continue
			}
			cy := float64(y) + rowH/2
			fill := "#66c2a5"
			if r.SlowUtil >= 1 {
				fill = "#fc8d62" // slow backend overloaded
			}
			fmt.Fprintf(b, `<text x="%d" y="%.1f" text-anchor="end" dominant-baseline="middle">%s</text>`+"\n", lab-6, cy, html.EscapeString(r.Policy))
			fmt.Fprintf(b, `<rect x="%d" y="%d" width="%.1f" height="%d" fill="%s"><title>%s</title></rect>`+"\n", lab, y+3, x1(r.P99)-lab, rowH-6, fill, html.EscapeString(r.Note))
			fmt.Fprintf(b, `<circle cx="%.1f" cy="%.1f" r="3" fill="black"/>`+"\n", x1(r.P50), cy)
			fmt.Fprintf(b, `<text x="%.1f" y="%.1f" dominant-baseline="middle" font-size="10" fill="#333">%s</text>`+"\n", x1(r.P99)+4, cy, fmtMS(r.P99))
			fmt.Fprintf(b, `<rect x="%d" y="%d" width="%.1f" height="%d" fill="#8da0cb"/>`+"\n", lab+pw+90, y+3, x2(min(r.SlowShare, 0.2))-float64(lab+pw+90), rowH-6)
			fmt.Fprintf(b, `<text x="%.1f" y="%.1f" dominant-baseline="middle" font-size="10" fill="#333">%.1f%%</text>`+"\n", x2(min(r.SlowShare, 0.2))+4, cy, r.SlowShare*100)
			y += rowH
		}
		for d := dlo; d <= dhi; d++ {
			v := math.Pow(10, d)
			fmt.Fprintf(b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#ccc" stroke-dasharray="2,3"/>`+"\n", x1(v), y0, x1(v), y)
			fmt.Fprintf(b, `<text x="%.1f" y="%d" text-anchor="middle" fill="#555" font-size="10">%s</text>`+"\n", x1(v), y+12, fmtMS(v))
		}
		for _, sh := range []float64{0, 0.05, 0.1, 0.15, 0.2} {
			fmt.Fprintf(b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#ccc" stroke-dasharray="2,3"/>`+"\n", x2(sh), y0, x2(sh), y)
			fmt.Fprintf(b, `<text x="%.1f" y="%d" text-anchor="middle" fill="#555" font-size="10">%g%%</text>`+"\n", x2(sh), y+12, sh*100)
		}
		y += 36
	}
	fmt.Fprintf(b, `<text x="10" y="%d" fill="#555" font-size="11">Orange: the strategy offers the slow backend more than its capacity, so its queue (and p99) grows with the length of the run.</text>`+"\n", h-12)
	b.WriteString("</svg>\n")
	return b.String()
}

func fmtMS(v float64) string {
	switch {
	case v >= 100_000:
		return fmt.Sprintf("%.0f s", v/1000)
	case v >= 1000:
		return fmt.Sprintf("%.3g s", v/1000)
	case v >= 1:
		return fmt.Sprintf("%.3g ms", v)
	default:
		return fmt.Sprintf("%.3g µs", v*1000)
	}
}
