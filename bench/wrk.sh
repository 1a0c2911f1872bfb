#!/bin/bash
# wrk.sh — run the shared wrk harness (../shared/bench) with tinylb
# (examples/standalone) as a target next to the peers installed here, then
# summarize. It installs nothing: for the peers,
#
#     apt-get install -y wrk nginx haproxy caddy
#
# (their packaged services must not be running; the harness starts its own
# instances on 127.0.0.1:18081-18083 and 18090).
#
#   bench/wrk.sh                 # WORKLOADS (small slow1k post64k), MODE=pinned, REPS=3
#   WORKLOADS=small TARGETS="goproxy-bp tinylb haproxy" REPS=3 bench/wrk.sh
#   SCALING=1 bench/wrk.sh       # only the GOMAXPROCS=2 vs 1 run (see below)
#   SUMMARY_ONLY=1 bench/wrk.sh  # only rebuild bench/results/summary.md from the tsv files
#
# Settings (environment), besides every knob of run.sh (DUR, WARM, CONNS, ...):
#   HARNESS   the shared harness       (default: <project>/../shared/bench)
#   OUTDIR    where the tsv files go   (default: <project>/bench/results)
#   WORKLOADS workloads to run         (default: small slow1k post64k)
#   TARGETS   targets, in run order    (default: goproxy goproxy-bp tinylb haproxy caddy oxy nginx-ka256;
#             those whose program is not installed are left out)
#   MODE      pinned (default) | unpinned;  REPS (default 3)
#   SCALING=1 instead: WORKLOAD=small MODE=unpinned, targets SCALE_TARGETS (default
#             "tinylb goproxy-bp") with TARGET_PROCS=1 and then 2 (tags small-unpinned-p1 and
#             small-unpinned-p2), REPS_SCALING (default 3).
#
# Output: $OUTDIR/<workload>-<mode>.tsv (one line per run, appended), raw wrk output in
# $OUTDIR/raw/, and $OUTDIR/summary.md: per tsv the harness's median [min–max] table and,
# per peer, the ratio of tinylb's CPU µs/request to the peer's taken within each rep
# (the runs of one rep are interleaved, so they share the machine's conditions).
set -uo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
HARNESS=${HARNESS:-$ROOT/../shared/bench}
OUTDIR=${OUTDIR:-$ROOT/bench/results}
WORKLOADS=${WORKLOADS:-small slow1k post64k}
TARGETS=${TARGETS:-goproxy goproxy-bp tinylb haproxy caddy oxy nginx-ka256}
MODE=${MODE:-pinned}
export REPS=${REPS:-3}
mkdir -p "$OUTDIR"

[ -x "$HARNESS/run.sh" ] || { echo "wrk.sh: no harness at $HARNESS (set HARNESS)" >&2; exit 1; }

# summarize writes $OUTDIR/summary.md from every tsv in $OUTDIR.
summarize() {
	local f
	{
		echo "# wrk harness results ($(date -u +%F), $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'))"
		echo
		echo "cpu_us_req = the target's CPU µs per request (utime+stime of its processes / requests)."
		echo "Ratios: tinylb's cpu_us_req ÷ the peer's, computed within each rep, median [min–max] over reps."
		for f in "$OUTDIR"/*.tsv; do
			[ -s "$f" ] || continue
			echo
			echo "## $(basename "$f" .tsv)"
			echo
			"$HARNESS/summarize.sh" "$f"
			echo
			ratios "$f"
		done
	} >"$OUTDIR/summary.md"
	echo "wrote $OUTDIR/summary.md" >&2
}

# ratios FILE.tsv: per peer, tinylb cpu_us_req / peer cpu_us_req for each rep, and the same
# for p99 (p99 depends on the load the machine's other tenants put on it: read with care).
ratios() {
	awk -F'\t' '
	FNR == 1 { for (i = 1; i <= NF; i++) ix[$i] = i; next }
	{ t = $(ix["target"]); r = $(ix["rep"]); cpu[t, r] = $(ix["cpu_us_req"]); p99[t, r] = $(ix["p99_us"])
	  if (!(t in seen)) { seen[t] = 1; order[++n] = t } if (r > maxr) maxr = r }
	END {
	  for (q = 1; q <= n; q++) { ref = order[q]; if (ref !~ /^tinylb/) continue
	    if (nref++) print ""
	    print "| " ref " ÷ peer | n | CPU µs/req ratio | each rep | p99 ratio |"
	    print "|---|---|---|---|---|"
	    for (o = 1; o <= n; o++) { p = order[o]; if (p == ref) continue
	      k = 0; delete a; delete b; list = ""
	      for (r = 1; r <= maxr; r++) if (((p, r) in cpu) && ((ref, r) in cpu) && cpu[p, r] > 0) {
	        k++; a[k] = cpu[ref, r] / cpu[p, r]; b[k] = (p99[p, r] > 0) ? p99[ref, r] / p99[p, r] : 0
	        list = list (list == "" ? "" : ", ") sprintf("%.2f", a[k]) }
	      if (k == 0) continue
	      printf "| %s | %d | %s | %s | %s |\n", p, k, stat(a, k), list, stat(b, k) }
	  }
	  if (!nref) print "(no tinylb runs in this file)"
	}
	function stat(x, m,   i, j, v, med) {
	  for (i = 2; i <= m; i++) { v = x[i]; j = i - 1; while (j >= 1 && x[j] > v) { x[j + 1] = x[j]; j-- } x[j + 1] = v }
	  med = (m % 2) ? x[(m + 1) / 2] : (x[m / 2] + x[m / 2 + 1]) / 2
	  return (m > 1) ? sprintf("%.2f [%.2f–%.2f]", med, x[1], x[m]) : sprintf("%.2f", med)
	}' "$1"
}

if [ -n "${SUMMARY_ONLY:-}" ]; then summarize; exit 0; fi

missing=()
for p in wrk taskset setsid curl; do command -v "$p" >/dev/null || missing+=("$p"); done
if ! command -v wrk >/dev/null; then
	echo "wrk.sh: wrk is not installed. Install the load generator and the peers with:" >&2
	echo "    apt-get install -y wrk nginx haproxy caddy" >&2
	exit 1
fi
[ ${#missing[@]} -eq 0 ] || { echo "wrk.sh: missing ${missing[*]}" >&2; exit 1; }

# Keep only the targets whose program is here.
have() {
	case $1 in
	nginx*) command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] ;;
	haproxy) command -v haproxy >/dev/null || [ -x /usr/sbin/haproxy ] ;;
	caddy) command -v caddy >/dev/null ;;
	*) return 0 ;;
	esac
}
sel=()
skipped=()
for t in $TARGETS; do if have "$t"; then sel+=("$t"); else skipped+=("$t"); fi; done
if [ ${#skipped[@]} -gt 0 ]; then
	echo "wrk.sh: not installed, left out: ${skipped[*]} (apt-get install -y wrk nginx haproxy caddy)" >&2
fi

# Build the harness's Go programs and tinylb once; the runs below skip the build.
export TINYLB_SRC=$ROOT OUTDIR
BIN=${BIN:-/tmp/lbbench/bin}
export BIN
mkdir -p "$BIN"
(cd "$ROOT/examples/standalone" && go build -o "$BIN/tinylb" .) || { echo "wrk.sh: build of examples/standalone failed" >&2; exit 1; }
for p in backend goproxy oxy; do
	[ -d "$HARNESS/$p" ] || continue
	(cd "$HARNESS/$p" && go build -o "$BIN/$p" .) || { echo "wrk.sh: build of $p failed" >&2; exit 1; }
done
export SKIP_BUILD=1
# What was measured: the commit and the uncommitted changes of the tree tinylb was built from.
{
	echo "$(date -u +%FT%TZ) $(basename "$0") WORKLOADS='$WORKLOADS' MODE=$MODE REPS=$REPS SCALING=${SCALING:-} targets: ${sel[*]}"
	echo "  tinylb built from $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')" \
		"+ $(git -C "$ROOT" status --porcelain 2>/dev/null | grep -vc '^?? bench/') uncommitted paths; $(go version)"
} >>"$OUTDIR/runs.log"

if [ -n "${SCALING:-}" ]; then
	# GOMAXPROCS=2 vs 1, unpinned: the target may use both vCPUs, and so may wrk and the
	# backends. On a 2-vCPU machine the load side needs about a core itself, so this
	# measures whether a second P helps at all under contention, not the ≥1.7× scaling
	# figure (that needs the load generator on other cores: see BENCHMARKS.md).
	read -r -a st <<<"${SCALE_TARGETS:-tinylb goproxy-bp}"
	for procs in 1 2; do
		REPS=${REPS_SCALING:-3} WORKLOAD=small MODE=unpinned TARGET_PROCS=$procs TAG=small-unpinned-p$procs \
			"$HARNESS/run.sh" "${st[@]}"
	done
	summarize
	exit 0
fi

for w in $WORKLOADS; do
	WORKLOAD=$w MODE=$MODE "$HARNESS/run.sh" "${sel[@]}"
done
summarize
