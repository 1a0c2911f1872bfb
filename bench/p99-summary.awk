# p99-summary.awk: median [min–max] per workload and target of bench/p99.sh's p99.tsv, then
# tinylb's p99 and CPU per request ÷ each peer's within each rep.
#   awk -f bench/p99-summary.awk bench/results/p99/p99.tsv
BEGIN { FS = "\t" }
NR == 1 { for (i = 1; i <= NF; i++) ix[$i] = i; next }
{
	w = $(ix["workload"]); t = $(ix["target"]); r = $(ix["rep"])
	if (!((w, t) in seen)) { seen[w, t] = 1; order[w] = order[w] " " t }
	if (!(w in wseen)) { wseen[w] = 1; wl[++nw] = w }
	n[w, t]++
	p50[w, t, n[w, t]] = $(ix["p50_us"]); p99[w, t, n[w, t]] = $(ix["p99_us"])
	p999[w, t, n[w, t]] = $(ix["p999_us"]); cpu[w, t, n[w, t]] = $(ix["cpu_us_req"])
	byrep99[w, t, r] = $(ix["p99_us"]); byrepcpu[w, t, r] = $(ix["cpu_us_req"]); reps[w, r] = 1
	rate[w] = $(ix["rate"])
}
function stat(a, w, t, m,   i, j, v, x) {
	for (i = 1; i <= m; i++) x[i] = a[w, t, i]
	for (i = 2; i <= m; i++) { v = x[i]; j = i - 1; while (j >= 1 && x[j] + 0 > v + 0) { x[j + 1] = x[j]; j-- } x[j + 1] = v }
	return sprintf("%s [%s–%s]", (m % 2) ? x[(m + 1) / 2] : (x[m / 2] + x[m / 2 + 1]) / 2, x[1], x[m])
}
function med(x, m,   i, j, v) {
	for (i = 2; i <= m; i++) { v = x[i]; j = i - 1; while (j >= 1 && x[j] > v) { x[j + 1] = x[j]; j-- } x[j + 1] = v }
	return sprintf("%.2f [%.2f–%.2f]", (m % 2) ? x[(m + 1) / 2] : (x[m / 2] + x[m / 2 + 1]) / 2, x[1], x[m])
}
END {
	for (q = 1; q <= nw; q++) {
		w = wl[q]
		printf "\n**%s** at %s req/s\n\n| target | n | p50 µs | p99 µs | p99.9 µs | CPU µs/req |\n|---|---|---|---|---|---|\n", w, rate[w]
		k = split(order[w], ts, " ")
		for (i = 1; i <= k; i++) { t = ts[i]; m = n[w, t]
			printf "| %s | %d | %s | %s | %s | %s |\n", t, m, stat(p50, w, t, m), stat(p99, w, t, m), stat(p999, w, t, m), stat(cpu, w, t, m) }
		printf "\n| tinylb ÷ peer | p99 ratio | CPU µs/req ratio |\n|---|---|---|\n"
		for (i = 1; i <= k; i++) { t = ts[i]; if (t == "tinylb") continue
			c = 0; delete a; delete b
			for (key in reps) { split(key, kk, SUBSEP); if (kk[1] != w) continue; r = kk[2]
				if (((w, t, r) in byrep99) && ((w, "tinylb", r) in byrep99)) { c++
					a[c] = byrep99[w, "tinylb", r] / byrep99[w, t, r]; b[c] = byrepcpu[w, "tinylb", r] / byrepcpu[w, t, r] } }
			if (c) printf "| %s | %s | %s |\n", t, med(a, c), med(b, c) }
	}
}
