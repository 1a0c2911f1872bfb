#!/bin/bash
# grpc.sh — CPU per gRPC call through tinylb, against Caddy's reverse_proxy (h2c
# transport) and a direct connection, with the method of the shared wrk harness
# (../shared/bench/run.sh): the proxy alone on core 1 with GOMAXPROCS=1, the load client
# and the backends on core 0, CPU from /proc/PID/stat, reps interleaved.
#
#   bench/grpc.sh                      # targets direct tinylb caddy, REPS=3
#   REPS=5 bench/grpc.sh
#   STREAM=10 bench/grpc.sh            # server-streaming calls of 10 messages instead
#   PROFILE=1 bench/grpc.sh            # no measurement: one tinylb run with -cpuprofile
#   SUMMARY_ONLY=1 bench/grpc.sh       # only rebuild the summary from the tsv
#   ALT_SRC=/tmp/lb-variant TARGETS="tinylb tinylb-alt caddy" bench/grpc.sh
#                                      # A/B: tinylb-alt = grpcbench built from another checkout
#
# The programs are examples/grpc/cmd/grpcbench (a module of its own, with grpc-go):
#   backends  grpcbench -backends 3 -addr-base $BPORT     (3 grpc-go Echo servers, one process)
#   tinylb    grpcbench -proxy 127.0.0.1:$PORT -to http://..., round robin, h2c both ways
#   caddy     caddy run, Caddyfile: servers { protocols h1 h2c }, reverse_proxy h2c://B1 h2c://B2
#             h2c://B3 { lb_policy round_robin }, admin off, logs discarded (Caddy 2.6.2 here)
#   direct    no proxy: the client's connections go to the backends themselves (DIRECT_CONNS,
#             spread evenly), the reference for the backends' and the client's own cost
#   load      grpcbench -load ADDR -c $WORKERS -d ${DUR}s -conns $CONNS -size $SIZE: closed loop,
#             unary Echo.Hello calls (a header, a ~16 B message and a trailer each way)
#
# Settings (environment): REPS=3 DUR=10 WARM=2 (s) WORKERS=64 CONNS=4 DIRECT_CONNS=6 SIZE=16
#   STREAM=0 (N>0: Echo.Count(N) streams)  TARGETS="direct tinylb caddy"  PORT=18390
#   BPORT=18381 (backends BPORT..BPORT+2)  PROXY_CPU=1 LOAD_CPU=0  TARGET_PROCS=1
#   TINYLB_GOGC (GOGC of the tinylb target; unset = Go's default 100, as Caddy runs)
#   BIN=/tmp/grpcbench/bin RUNDIR=/tmp/grpcbench/run OUTDIR=<project>/bench/results/grpc
#   TAG (default unary-c$WORKERS-k$CONNS, or stream$STREAM-…)  QUIET_MAX=4 QUIET_CORES=0.3 (as run.sh)
#
# Output: $OUTDIR/$TAG.tsv, one line per run (appended), the client's lines in $OUTDIR/raw/,
# and $OUTDIR/$TAG-summary.md: median [min–max] per target and tinylb ÷ caddy within each rep.
# Columns: cpu_us_per_rpc = the proxy's utime+stime over the measured run (its whole session)
# ÷ successful calls (0 for direct); backend_cpu_us_per_rpc = the same for the backends'
# process; load_cpu_us_per_rpc = the client's; tgt_util = proxy CPU ÷ wall; core0/core1 =
# busy fraction of each core; foreign = cores used by anything else (other tenants);
# reads_per_rpc/writes_per_rpc = read/write system calls of the proxy process per call
# (/proc/PID/io syscr, syscw).
set -uo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
REPS=${REPS:-3}
DUR=${DUR:-10}
WARM=${WARM:-2}
WORKERS=${WORKERS:-64}
CONNS=${CONNS:-4}
DIRECT_CONNS=${DIRECT_CONNS:-6}
SIZE=${SIZE:-16}
STREAM=${STREAM:-0}
read -r -a TARGETS <<<"${TARGETS:-direct tinylb caddy}"
PORT=${PORT:-18390}
BPORT=${BPORT:-18381}
BP=("$BPORT" $((BPORT + 1)) $((BPORT + 2)))
PROXY_CPU=${PROXY_CPU:-1}
LOAD_CPU=${LOAD_CPU:-0}
TARGET_PROCS=${TARGET_PROCS:-1}
BIN=${BIN:-/tmp/grpcbench/bin}
RUNDIR=${RUNDIR:-/tmp/grpcbench/run}
OUTDIR=${OUTDIR:-$ROOT/bench/results/grpc}
if [ "$STREAM" -gt 0 ]; then KIND=stream$STREAM; else KIND=unary; fi
TAG=${TAG:-$KIND-c$WORKERS-k$CONNS}
CLK_TCK=$(getconf CLK_TCK)
OUT=$OUTDIR/$TAG.tsv
mkdir -p "$BIN" "$RUNDIR" "$OUTDIR/raw"

# summarize TSV: median [min–max] per target and column, then tinylb ÷ caddy (and tinylb-alt ÷
# caddy, tinylb-alt ÷ tinylb) within each rep.
summarize() {
	awk -F'\t' '
	function med(arr, k,   i, j, t, s) { for (i = 1; i <= k; i++) s[i] = arr[i]
	  for (i = 2; i <= k; i++) { t = s[i]; for (j = i - 1; j >= 1 && s[j] > t; j--) s[j + 1] = s[j]; s[j + 1] = t }
	  lo = s[1]; hi = s[k]; return (k % 2) ? s[(k + 1) / 2] : (s[k / 2] + s[k / 2 + 1]) / 2 }
	function fmt(v) { return (v == int(v) || v >= 100 || v <= -100) ? sprintf("%.0f", v) : sprintf("%.3g", v) }
	FNR == 1 { for (i = 1; i <= NF; i++) { ix[$i] = i; name[i] = $i }; ncol = NF; next }
	{ t = $1; r = $2; if (!(t in seen)) { seen[t] = 1; order[++n] = t }; cnt[t]++
	  for (i = 3; i <= ncol; i++) v[t, cnt[t], i] = $i
	  for (i = 3; i <= ncol; i++) byrep[t, r, i] = $i; if (r > maxr) maxr = r; has[t, r] = 1 }
	END {
	  printf "| target | n |"; for (i = 3; i <= ncol; i++) printf " %s |", name[i]; print ""
	  printf "|---|---|"; for (i = 3; i <= ncol; i++) printf "---|"; print ""
	  for (o = 1; o <= n; o++) { t = order[o]; printf "| %s | %d |", t, cnt[t]
	    for (i = 3; i <= ncol; i++) { delete a; for (k = 1; k <= cnt[t]; k++) a[k] = v[t, k, i]
	      m = med(a, cnt[t]); printf " %s [%s–%s] |", fmt(m), fmt(lo), fmt(hi) }
	    print "" }
	  c = ix["cpu_us_per_rpc"]; b = ix["backend_cpu_us_per_rpc"]; p = ix["p99_us"]; q = ix["rps"]
	  split("proxy CPU µs/RPC,backends CPU µs/RPC,rps,p99", lab, ",")
	  split(c " " b " " q " " p, col, " ")
	  np = split("tinylb/caddy tinylb-alt/caddy tinylb-alt/tinylb", pairs, " ")
	  for (P = 1; P <= np; P++) { split(pairs[P], ab, "/"); x = ab[1]; y = ab[2]
	    if (!((x in seen) && (y in seen))) continue
	    print ""; print "| " x " ÷ " y " | n | median [min–max] | each rep |"; print "|---|---|---|---|"
	    for (L = 1; L <= 4; L++) { k = 0; list = ""; delete a
	      for (r = 1; r <= maxr; r++) if (has[x, r] && has[y, r] && byrep[y, r, col[L]] > 0) {
	        a[++k] = byrep[x, r, col[L]] / byrep[y, r, col[L]]
	        list = list (k > 1 ? ", " : "") sprintf("%.2f", a[k]) }
	      if (k) { m = med(a, k); printf "| %s | %d | %.2f [%.2f–%.2f] | %s |\n", lab[L], k, m, lo, hi, list } } }
	}' "$1"
}
if [ -n "${SUMMARY_ONLY:-}" ]; then summarize "$OUT" | tee "$OUTDIR/$TAG-summary.md"; exit 0; fi

(cd "$ROOT/examples/grpc" && go build -o "$BIN/grpcbench" ./cmd/grpcbench) || { echo "build of grpcbench failed" >&2; exit 1; }
if [ -n "${ALT_SRC:-}" ]; then
	(cd "$ALT_SRC/examples/grpc" && go build -o "$BIN/grpcbench-alt" ./cmd/grpcbench) || { echo "build of $ALT_SRC failed" >&2; exit 1; }
fi
command -v caddy >/dev/null || { echo "no caddy in PATH" >&2; exit 1; }

STARTED=()
stop_session() { # stop_session PID : TERM the session's process group, then KILL after 5 s
	local p=$1 i
	kill -TERM -- "-$p" 2>/dev/null || return 0
	for i in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
	kill -KILL -- "-$p" 2>/dev/null
	wait "$p" 2>/dev/null
	return 0
}
cleanup() { local p; for p in "${STARTED[@]}"; do stop_session "$p"; done; }
trap cleanup EXIT
trap 'exit 130' INT TERM
PIN_TGT=(taskset -c "$PROXY_CPU")
PIN_LOAD=(taskset -c "$LOAD_CPU")
start_session() { # start_session LOG PINARRAY CMD... : own session, pid = sid; sets LAST_PID
	local log=$1 pin=$2; shift 2
	local -n pinref=$pin
	setsid "${pinref[@]}" "$@" >"$log" 2>&1 </dev/null &
	LAST_PID=$!
	STARTED+=("$LAST_PID")
}
session_ticks() { # session_ticks SID : utime+stime (ticks) over the processes of session SID
	local sid=$1 f line rest sum=0
	local -a a
	for f in /proc/[0-9]*/stat; do
		{ read -r line <"$f"; } 2>/dev/null || continue
		rest=${line##*) }
		read -r -a a <<<"$rest"
		[ "${a[3]}" = "$sid" ] && sum=$((sum + a[11] + a[12]))
	done
	echo $sum
}
cpu_snapshot() { # "busy0 total0 busy1 total1 irq+softirq(both)" in ticks from /proc/stat
	awk -v c0="cpu$LOAD_CPU" -v c1="cpu$PROXY_CPU" '
	$1==c0 || $1==c1 { t=0; for (i=2;i<=9;i++) t+=$i; b=t-$5-$6; v[$1]=b" "t; si+=$7+$8 }
	END { print v[c0], v[c1], si }' /proc/stat
}
children_cpu() { # user+sys s of this shell's finished children, from a `times` output file
	awk 'NR==2 { s=0; for (i=1;i<=2;i++) { split($i, a, "m"); s+=a[1]*60+a[2] } printf "%.3f", s }' "$1"
}
quiet_gate() { # as run.sh: wait (at most QUIET_MAX s) until the machine uses < QUIET_CORES
	local a b start=$SECONDS
	[ "${QUIET_MAX:-4}" -gt 0 ] || return 0
	while :; do
		a=$(awk '$1=="cpu" {print $2+$3+$4+$7+$8+$9}' /proc/stat); sleep 0.5
		b=$(awk '$1=="cpu" {print $2+$3+$4+$7+$8+$9}' /proc/stat)
		awk -v d=$((b - a)) -v hz="$CLK_TCK" -v q="${QUIET_CORES:-0.3}" 'BEGIN { exit !(d / hz / 0.5 < q) }' && break
		[ $((SECONDS - start)) -ge "${QUIET_MAX:-4}" ] && { echo "  quiet gate: still busy after ${QUIET_MAX:-4}s, running anyway" >&2; break; }
	done
}
wait_port() { # wait_port PORT PID : until PORT accepts a TCP connection (max 15 s)
	local i
	for i in $(seq 150); do
		kill -0 "$2" 2>/dev/null || return 1
		(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
		sleep 0.1
	done
	return 1
}
proc_io() { # proc_io PID : "read-syscalls write-syscalls" of the process (all its threads)
	awk '/^syscr/ {r=$2} /^syscw/ {w=$2} END {print r+0, w+0}' "/proc/$1/io" 2>/dev/null || echo "0 0"
}
field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" "$2"; } # field NAME FILE: NAME=value of the client line

caddyfile() { # the Caddy target's config
	cat <<CONF
{
	admin off
	auto_https off
	servers {
		protocols h1 h2c
	}
	log default {
		output discard
	}
}
http://127.0.0.1:$PORT {
	bind 127.0.0.1
	reverse_proxy h2c://127.0.0.1:${BP[0]} h2c://127.0.0.1:${BP[1]} h2c://127.0.0.1:${BP[2]} {
		lb_policy round_robin
	}
}
CONF
}

# start_target TARGET : start the proxy (sets TPID, ADDR, NCONNS); direct starts nothing.
start_target() {
	local t=$1 prof=()
	TPID=; ADDR=127.0.0.1:$PORT; NCONNS=$CONNS
	case $t in
	direct) ADDR=127.0.0.1:${BP[0]},127.0.0.1:${BP[1]},127.0.0.1:${BP[2]}; NCONNS=$DIRECT_CONNS; return 0 ;;
	tinylb | tinylb-alt)
		local bin=$BIN/grpcbench
		[ "$t" = tinylb-alt ] && bin=$BIN/grpcbench-alt
		[ -n "${CPUPROFILE:-}" ] && prof=(-cpuprofile "$CPUPROFILE")
		start_session "$RUNDIR/$t.log" PIN_TGT env GOMAXPROCS="$TARGET_PROCS" ${TINYLB_GOGC:+GOGC=$TINYLB_GOGC} \
			"$bin" -proxy "$ADDR" "${prof[@]}" \
			-to "http://127.0.0.1:${BP[0]},http://127.0.0.1:${BP[1]},http://127.0.0.1:${BP[2]}" ;;
	caddy)
		mkdir -p "$RUNDIR/caddy"; caddyfile >"$RUNDIR/caddy/Caddyfile"
		start_session "$RUNDIR/$t.log" PIN_TGT env GOMAXPROCS="$TARGET_PROCS" XDG_DATA_HOME="$RUNDIR/caddy/data" \
			XDG_CONFIG_HOME="$RUNDIR/caddy/config" HOME="$RUNDIR/caddy" \
			caddy run --adapter caddyfile --config "$RUNDIR/caddy/Caddyfile" ;;
	*) echo "unknown target $t" >&2; return 1 ;;
	esac
	TPID=$LAST_PID
	wait_port "$PORT" "$TPID" || { echo "target $t did not listen on $PORT; log: $RUNDIR/$t.log" >&2; tail -5 "$RUNDIR/$t.log" >&2; return 1; }
}
load() { # load SECONDS OUTFILE
	timeout $(($1 + 30)) "${PIN_LOAD[@]}" "$BIN/grpcbench" -load "$ADDR" -c "$WORKERS" -d "${1}s" \
		-conns "$NCONNS" -size "$SIZE" -stream "$STREAM" >"$2" 2>&1
}

# --- backends ---------------------------------------------------------------------
start_session "$RUNDIR/backends.log" PIN_LOAD "$BIN/grpcbench" -backends 3 -addr-base "$BPORT"
BE_PID=$LAST_PID
for p in "${BP[@]}"; do wait_port "$p" "$BE_PID" || { echo "backend on $p did not start" >&2; exit 1; }; done

if [ -n "${PROFILE:-}" ]; then # one profiled tinylb run, no measurement
	CPUPROFILE=$OUTDIR/raw/$TAG-tinylb.pprof
	start_target tinylb || exit 1
	load "$DUR" "$OUTDIR/raw/$TAG-tinylb-profiled.txt"; cat "$OUTDIR/raw/$TAG-tinylb-profiled.txt"
	stop_session "$TPID"
	echo "profile: $CPUPROFILE  (go tool pprof -top $BIN/grpcbench $CPUPROFILE)"
	exit 0
fi

[ -s "$OUT" ] || printf 'target\trep\trpcs\trps\tp50_us\tp99_us\tcpu_us_per_rpc\tbackend_cpu_us_per_rpc\terrors\tp999_us\ttgt_util\tcore0\tcore1\tload_cpu_us_per_rpc\tforeign\treads_per_rpc\twrites_per_rpc\n' >"$OUT"
echo "# $(date -u +%FT%TZ) $TAG WORKERS=$WORKERS CONNS=$CONNS SIZE=$SIZE STREAM=$STREAM DUR=$DUR REPS=$REPS targets: ${TARGETS[*]} -> $OUT" >&2

run_one() { # run_one TARGET REP
	local t=$1 rep=$2 raw=$OUTDIR/raw/$TAG-$1-$2.txt c0=0 c1=0 b0 b1 s0 s1 w0 w1 x0 x1 io0="0 0" io1="0 0"
	start_target "$t" || return 1
	quiet_gate
	load "$WARM" "$RUNDIR/warm.txt"
	[ "$(field errors "$RUNDIR/warm.txt")" = 0 ] || { echo "warm-up of $t failed:" >&2; cat "$RUNDIR/warm.txt" >&2; }
	b0=$(session_ticks "$BE_PID"); s0=$(cpu_snapshot); [ -n "$TPID" ] && c0=$(session_ticks "$TPID") && io0=$(proc_io "$TPID")
	times >"$RUNDIR/.times0"; w0=$(date +%s.%N)
	load "$DUR" "$raw"
	w1=$(date +%s.%N); times >"$RUNDIR/.times1"
	[ -n "$TPID" ] && c1=$(session_ticks "$TPID") && io1=$(proc_io "$TPID"); s1=$(cpu_snapshot); b1=$(session_ticks "$BE_PID")
	x0=$(children_cpu "$RUNDIR/.times0"); x1=$(children_cpu "$RUNDIR/.times1")
	[ -n "$TPID" ] && stop_session "$TPID"
	STARTED=("$BE_PID")
	awk -v t="$t" -v r="$rep" -v rpcs="$(field rpcs "$raw")" -v rps="$(field rps "$raw")" \
		-v p50="$(field p50_us "$raw")" -v p99="$(field p99_us "$raw")" -v p999="$(field p999_us "$raw")" \
		-v errs="$(field errors "$raw")" -v c0="$c0" -v c1="$c1" -v b0="$b0" -v b1="$b1" -v hz="$CLK_TCK" \
		-v w0="$w0" -v w1="$w1" -v s0="$s0" -v s1="$s1" -v x0="$x0" -v x1="$x1" -v io0="$io0" -v io1="$io1" 'BEGIN {
		split(s0, a, " "); split(s1, b, " "); split(io0, i0, " "); split(io1, i1, " ")
		cpu = (c1 - c0) / hz; wall = w1 - w0; be = (b1 - b0) / hz; ld = x1 - x0; n = rpcs + 0
		u0 = (b[2] - a[2]) ? (b[1] - a[1]) / (b[2] - a[2]) : 0
		u1 = (b[4] - a[4]) ? (b[3] - a[3]) / (b[4] - a[4]) : 0
		foreign = ((b[1] - a[1]) + (b[3] - a[3]) - (b[5] - a[5])) / hz - cpu - be - ld
		if (foreign < 0) foreign = 0
		printf "%s\t%d\t%d\t%.0f\t%d\t%d\t%.2f\t%.2f\t%d\t%d\t%.2f\t%.2f\t%.2f\t%.2f\t%.2f\t%.2f\t%.2f\n",
			t, r, n, rps, p50, p99, n ? cpu * 1e6 / n : 0, n ? be * 1e6 / n : 0, errs, p999,
			cpu / wall, u0, u1, n ? ld * 1e6 / n : 0, foreign / wall,
			n ? (i1[1] - i0[1]) / n : 0, n ? (i1[2] - i0[2]) / n : 0
	}' | tee -a "$OUT"
}

for rep in $(seq "$REPS"); do
	for t in "${TARGETS[@]}"; do
		run_one "$t" "$rep"
	done
done
summarize "$OUT" | tee "$OUTDIR/$TAG-summary.md"
