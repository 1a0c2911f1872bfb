#!/usr/bin/env bash
# p99.sh — latency at equal load. wrk (bench/wrk.sh) runs closed loop, so every proxy runs at its
# own saturation and its p99 is mostly its queue. Here every target gets the same fixed request
# rate from bench/cmd/openloop (open loop, latency from each request's scheduled time, as wrk2
# measures it), set below the saturation of the slowest target, and the percentiles compare the
# proxies at equal load. The target runs alone on core 1 with GOMAXPROCS=1, targets interleaved.
# Core 0 holds the load and the backends. LAYOUT=merged (the default) makes them one process,
# openloop -serve (GOMAXPROCS=1), so that the kernel never has to share core 0 out between four
# busy processes in time slices of milliseconds, which is what set the tails with LAYOUT=separate
# (the shared harness's three backend processes and an openloop process per run).
#
#   bench/p99.sh                                   # small, slow1k, post64k; 3 reps
#   WORKLOADS=small TARGETS="goproxy-bp tinylb" REPS=5 bench/p99.sh
#
# Environment: LAYOUT (merged), WORKLOADS, TARGETS, REPS (3), DUR (10 s measured after a 2 s warm-up),
# RATE_SMALL (10000/s, c=64), RATE_SLOW1K (8000/s, c=256), RATE_POST64K (5000/s, c=64), OUTDIR
# (bench/results/p99), HARNESS (../shared/bench), BIN (/tmp/lbbench/bin). It builds
# examples/standalone, openloop and the harness's Go programs; it installs nothing (the peers:
# apt-get install -y nginx haproxy caddy). Output: $OUTDIR/p99.tsv, one line per run, with the
# target's CPU µs per request at that rate.
set -uo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
HARNESS=${HARNESS:-$ROOT/../shared/bench}
BIN=${BIN:-/tmp/lbbench/bin}
LAYOUT=${LAYOUT:-merged}
case $LAYOUT in merged) OUTDIR=${OUTDIR:-$ROOT/bench/results/p99-merged} ;; separate) OUTDIR=${OUTDIR:-$ROOT/bench/results/p99} ;;
*) echo "p99.sh: LAYOUT is merged or separate" >&2; exit 2 ;; esac
WORKLOADS=${WORKLOADS:-small slow1k post64k}
TARGETS=${TARGETS:-goproxy-bp tinylb oxy caddy haproxy}
REPS=${REPS:-3}
DUR=${DUR:-10}
PORT=18090
BP=(18081 18082 18083)
HZ=$(getconf CLK_TCK)

[ -f "$HARNESS/targets.txt" ] || { echo "p99.sh: no harness at $HARNESS (set HARNESS)" >&2; exit 1; }
mkdir -p "$OUTDIR" "$BIN"
(cd "$ROOT/examples/standalone" && go build -o "$BIN/tinylb" .) && (cd "$ROOT" && go build -o "$BIN/openloop" ./bench/cmd/openloop) || exit 1
for p in backend goproxy oxy; do
	(cd "$HARNESS/$p" && go build -o "$BIN/$p" .) || exit 1
done

PIDS=()
stop() { kill -TERM -- "-$1" 2>/dev/null; for _ in $(seq 50); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.1; done; kill -KILL -- "-$1" 2>/dev/null; }
cleanup() { local p; for p in "${PIDS[@]}"; do stop "$p"; done; }
trap cleanup EXIT
trap 'exit 130' INT TERM
start() { # start CPU CMD... : in its own session, pinned; sets LAST
	local cpu=$1; shift
	setsid taskset -c "$cpu" "$@" >/dev/null 2>&1 </dev/null &
	LAST=$!
	PIDS+=("$LAST")
}
ready() { for _ in $(seq 150); do [ "$(curl -s -o /dev/null -m 1 -w '%{http_code}' "http://127.0.0.1:$1/")" = 200 ] && return 0; sleep 0.1; done; return 1; }
ticks() { # utime+stime of every process of session $1
	local f line rest sum=0
	local -a a
	for f in /proc/[0-9]*/stat; do
		{ read -r line <"$f"; } 2>/dev/null || continue
		rest=${line##*) }
		read -r -a a <<<"$rest"
		[ "${a[3]}" = "$1" ] && sum=$((sum + a[11] + a[12]))
	done
	echo $sum
}

OUT=$OUTDIR/p99.tsv
[ -s "$OUT" ] || printf 'workload\ttarget\trep\trate\tachieved\treqs\terrors\tp50_us\tp90_us\tp99_us\tp999_us\tmax_us\tcpu_us_req\n' >"$OUT"
echo "$(date -u +%FT%TZ) p99.sh LAYOUT=$LAYOUT WORKLOADS='$WORKLOADS' REPS=$REPS DUR=$DUR targets: $TARGETS; tinylb at $(git -C "$ROOT" rev-parse --short HEAD)" >>"$OUTDIR/runs.log"

for w in $WORKLOADS; do
	case $w in
	small) BFLAGS=""; SFLAGS=""; RATE=${RATE_SMALL:-10000}; CONNS=64; BODY=0 ;;
	slow1k) BFLAGS="-size 1024 -delay 10ms"; SFLAGS="-serve-size 1024 -serve-delay 10ms"; RATE=${RATE_SLOW1K:-8000}; CONNS=256; BODY=0 ;;
	post64k) BFLAGS=""; SFLAGS=""; RATE=${RATE_POST64K:-5000}; CONNS=64; BODY=65536 ;;
	*) echo "p99.sh: unknown workload $w" >&2; exit 2 ;;
	esac
	BE=()
	if [ "$LAYOUT" = merged ]; then
		# shellcheck disable=SC2086
		start 0 env GOMAXPROCS=1 "$BIN/openloop" -serve "127.0.0.1:${BP[0]},127.0.0.1:${BP[1]},127.0.0.1:${BP[2]}" \
			$SFLAGS -control 127.0.0.1:18099
		BE+=("$LAST")
	else
		for i in 0 1 2; do
			# shellcheck disable=SC2086
			start 0 env GOMAXPROCS=1 "$BIN/backend" -addr "127.0.0.1:${BP[$i]}" -name "b$((i + 1))" $BFLAGS
			BE+=("$LAST")
		done
	fi
	for i in 0 1 2; do ready "${BP[$i]}" || { echo "p99.sh: backend ${BP[$i]} did not start" >&2; exit 1; }; done
	for rep in $(seq "$REPS"); do
		for t in $TARGETS; do
			spec=$(awk -v n="$t" '$1==n { sub(/^[^ \t]+[ \t]+/, ""); print; exit }' "$HARNESS/targets.txt")
			[ -n "$spec" ] || { echo "p99.sh: no target $t in $HARNESS/targets.txt" >&2; continue; }
			cmd=${spec//\{PORT\}/$PORT}
			cmd=${cmd//\{B1\}/${BP[0]}}; cmd=${cmd//\{B2\}/${BP[1]}}; cmd=${cmd//\{B3\}/${BP[2]}}
			cmd=${cmd//\{BIN\}/$BIN}; cmd=${cmd//\{DIR\}/$HARNESS}; cmd=${cmd//\{BFLAGS\}/$BFLAGS}
			start 1 env GOMAXPROCS=1 bash -c "exec $cmd"
			tp=$LAST
			if ! ready "$PORT"; then echo "p99.sh: $t did not answer" >&2; stop "$tp"; continue; fi
			c0=$(ticks "$tp")
			if [ "$LAYOUT" = merged ]; then
				line=$(curl -sf -m $((DUR + 60)) "http://127.0.0.1:18099/run?url=http://127.0.0.1:$PORT/&rate=$RATE&duration=${DUR}s&warmup=2s&conns=$CONNS&body=$BODY")
			else
				line=$(taskset -c 0 env GOMAXPROCS=1 "$BIN/openloop" -url "http://127.0.0.1:$PORT/" -rate "$RATE" \
					-duration "${DUR}s" -warmup 2s -conns "$CONNS" -body "$BODY")
			fi
			c1=$(ticks "$tp")
			stop "$tp"
			[ -n "$line" ] || { echo "p99.sh: $t: no result" >&2; continue; }
			sent=$(awk -v r="$RATE" -v d="$DUR" 'BEGIN { printf "%d", r * (d + 2) }')
			printf '%s\t%s\t%d\t%s\t%.2f\n' "$w" "$t" "$rep" "$line" \
				"$(awk -v c=$((c1 - c0)) -v hz="$HZ" -v n="$sent" 'BEGIN { print c / hz * 1e6 / n }')" | tee -a "$OUT"
		done
	done
	for p in "${BE[@]}"; do stop "$p"; done
	PIDS=()
done
