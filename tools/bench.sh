#!/usr/bin/env bash
# tools/bench.sh - build weft (Release) and run the workload suite.
#
# Runs every workload program build/bench/w<N>_<name> (WORKLOADS.md in
# ../shared) at each worker count, REPEATS times, and prints one markdown
# table: a row per workload and worker count, a column per metric holding
# the median over the runs. Progress goes to stderr, the table to stdout.
# A run that exits non-zero, times out or prints no RESULT line marks its
# row FAILED, and the script then exits non-zero.
#
# Environment:
#   WORKERS="1 2"   worker counts (default: 1 .. nproc)
#   REPEATS=3       runs per workload and worker count
#   RUN_TIMEOUT=300 seconds allowed per run
#   PEERS=1         afterwards also run peers/run.sh for the same workloads
#                   (servers included) with RUNTIMES="weft tokio" and print
#                   its tables; the peers folder (PEERS_SRC, default
#                   ../shared/peers) is copied to PEERS_WORKDIR (default
#                   /tmp/weft-peers, kept so Tokio is built only once)
#
# Servers (w10, w11) are started as `<prog> <workers> <port>` on 127.0.0.1,
# waited for (READY), loaded and stopped with SIGTERM: W10 by weft's own
# build/bench/load_echo (64 connections x 5,000 round trips), W11 by
# `wrk -t1 -c64 -d5s --latency` (tools/deps.sh installs wrk). Both rows get
# srv_cpu_us_per_req, the server's user + system CPU time per request.
set -uo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT" || exit 1

REPEATS=${REPEATS:-3}
WORKERS=${WORKERS:-$(seq -s ' ' 1 "$(nproc)")}
RUN_TIMEOUT=${RUN_TIMEOUT:-300}
BENCH_DIR=$ROOT/build/bench

log() { printf '%s\n' "$*" >&2; }

tools/deps.sh || exit 1
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DWEFT_SANITIZE= \
    -DWEFT_BUILD_TESTS=ON -DWEFT_BUILD_BENCH=ON >&2 || exit 1
cmake --build build -j"$(nproc)" >&2 || exit 1

# ---- discover the workload programs -----------------------------------------
progs=()
while IFS= read -r p; do
    progs+=("$p")
done < <(find "$BENCH_DIR" -maxdepth 1 -type f -perm -u+x -name 'w[0-9]*_*' -printf '%f\n' 2>/dev/null | sort -V)
if [ ${#progs[@]} -eq 0 ]; then
    log "bench.sh: no workload programs in $BENCH_DIR"
    exit 1
fi

# ---- servers -------------------------------------------------------------------
PORT=${PORT_BASE:-19500}
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat" 2>/dev/null || echo 0; }

# run_server PROG WORKERS BASE: start, load, stop; sets rc, writes $BASE.out.
run_server() {
    local prog=$1 w=$2 base=$3 pid t0 t1 i
    PORT=$((PORT + 1))
    "$BENCH_DIR/$prog" "$w" "$PORT" >"$base.server" 2>&1 &
    pid=$!
    for i in $(seq 200); do
        grep -q '^READY' "$base.server" 2>/dev/null && break
        sleep 0.05
    done
    if ! grep -q '^READY' "$base.server" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
        rc=3
        return
    fi
    case $prog in
    w10_*)
        timeout -k 5 90 "$BENCH_DIR/load_echo" weft "$w" "$PORT" 64 5000 --server-pid "$pid" \
            >"$base.out" 2>"$base.err"
        rc=$?
        ;;
    w11_*)
        t0=$(cpu_ticks "$pid")
        timeout -k 5 60 wrk -t1 -c64 -d5s --latency "http://127.0.0.1:$PORT/" >"$base.wrk" 2>"$base.err"
        rc=$?
        t1=$(cpu_ticks "$pid")
        awk -v w="$w" -v t0="$t0" -v t1="$t1" -v hz="$(getconf CLK_TCK)" '
            function us(v) {
                if (v ~ /us$/) return v + 0
                if (v ~ /ms$/) return v * 1000
                if (v ~ /s$/) return v * 1000000
                return v
            }
            /^Requests\/sec:/ { rps = $2 }
            $1 == "99%" && p99 == "" { p99 = us($2) }
            /Socket errors:|Non-2xx/ { errs = 1 }
            END {
                if (rps == "" || p99 == "" || errs) exit 1
                printf "RESULT http_hello weft workers=%s req_per_s=%.0f p99_us=%.1f srv_cpu_us_per_req=%.2f\n",
                    w, rps, p99, (t1 - t0) / hz * 1e6 / (rps * 5)
            }' "$base.wrk" >"$base.out" || rc=4
        ;;
    esac
    kill -TERM "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
}

# ---- run ----------------------------------------------------------------------
LOGDIR=$(mktemp -d "${TMPDIR:-/tmp}/weft-bench.XXXXXX")
RAW=$LOGDIR/raw.tsv
: >"$RAW"
failed=0
log "== ${#progs[@]} workloads, workers: $WORKERS, repeats: $REPEATS; logs in $LOGDIR"
for prog in "${progs[@]}"; do
    for w in $WORKERS; do
        for rep in $(seq 1 "$REPEATS"); do
            base=$LOGDIR/$prog.w$w.r$rep
            case $prog in
            w10_* | w11_*) run_server "$prog" "$w" "$base" ;;
            *)
                timeout -k 5 "$RUN_TIMEOUT" "$BENCH_DIR/$prog" "$w" >"$base.out" 2>"$base.err"
                rc=$?
                ;;
            esac
            line=$(grep -m1 '^RESULT ' "$base.out")
            if [ $rc -eq 0 ] && [ -n "$line" ]; then
                printf '%s\t%s\tok\t%s\n' "$prog" "$w" "$line" >>"$RAW"
                log "  [$prog w=$w #$rep] $line"
            else
                why="exit $rc"
                [ $rc -eq 124 ] && why="timeout ${RUN_TIMEOUT}s"
                [ $rc -eq 0 ] && why="no RESULT line"
                printf '%s\t%s\tfail\t%s\n' "$prog" "$w" "$why" >>"$RAW"
                log "  [$prog w=$w #$rep] FAILED: $why (see $base.err)"
                failed=1
            fi
        done
    done
done

# ---- the table ----------------------------------------------------------------------
echo "weft workload suite: $(nproc) CPUs, $(uname -sr), median of $REPEATS runs, $(date -u '+%Y-%m-%d %H:%M UTC')"
echo
awk -F'\t' '
    function median(key, n,   i, j, v, a) {
        for (i = 1; i <= n; i++) {          # insertion sort (mawk has no asort)
            v = vals[key, i] + 0
            for (j = i - 1; j >= 1 && a[j] > v; j--) a[j + 1] = a[j]
            a[j + 1] = v
        }
        return (n % 2) ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
    }
    function fmt(x) {
        if (x == int(x)) return sprintf("%d", x)
        return sprintf((x < 10 && x > -10) ? "%.2f" : "%.1f", x)
    }
    {
        row = $1 SUBSEP $2
        if (!(row in seen)) { seen[row] = 1; rows[++nrows] = row; prog[row] = $1; wk[row] = $2 }
        total[row]++
        if ($3 != "ok") { fails[row]++; why[row] = $4; next }
        nf = split($4, f, " ")
        if (name[row] == "") name[row] = f[2]
        for (i = 5; i <= nf; i++) {
            eq = index(f[i], "=")
            if (eq == 0) continue
            m = substr(f[i], 1, eq - 1)
            if (!(m in known)) { known[m] = 1; metrics[++nmetrics] = m }
            k = row SUBSEP m
            vals[k, ++cnt[k]] = substr(f[i], eq + 1)
        }
    }
    END {
        printf "| workload | workers | runs |"
        for (j = 1; j <= nmetrics; j++) printf " %s |", metrics[j]
        printf "\n|---|---:|---|"
        for (j = 1; j <= nmetrics; j++) printf "---:|"
        printf "\n"
        for (r = 1; r <= nrows; r++) {
            row = rows[r]
            p = prog[row]
            id = p; sub(/_.*/, "", id); id = toupper(id)
            wl = name[row] != "" ? name[row] : substr(p, index(p, "_") + 1)
            status = fails[row] ? sprintf("FAILED (%s; %d/%d ok)", why[row], total[row] - fails[row], total[row]) : total[row]
            printf "| %s %s | %s | %s |", id, wl, wk[row], status
            for (j = 1; j <= nmetrics; j++) {
                k = row SUBSEP metrics[j]
                printf " %s |", cnt[k] ? fmt(median(k, cnt[k])) : ""
            }
            printf "\n"
        }
    }' "$RAW"

# ---- peers ------------------------------------------------------------------------------
if [ "${PEERS:-0}" = 1 ]; then
    src=${PEERS_SRC:-$ROOT/../shared/peers}
    work=${PEERS_WORKDIR:-/tmp/weft-peers}
    if [ ! -x "$src/run.sh" ]; then
        log "bench.sh: PEERS=1 but $src/run.sh is missing"
        exit 1
    fi
    # A writable copy; earlier builds in it (tokio/target, go/bin) are kept.
    mkdir -p "$work" && chmod -R u+w "$work" &&
        cp -rT --preserve=timestamps "$src" "$work" && chmod -R u+w "$work" || exit 1
    ids=()
    for prog in "${progs[@]}"; do
        id=${prog%%_*}
        ids+=("W${id#w}")
    done
    log "== peers: $work/run.sh ${ids[*]}"
    echo
    RUNTIMES="weft tokio" WEFT_BIN=$BENCH_DIR WORKERS=$WORKERS REPEATS=$REPEATS \
        RUN_TIMEOUT=$RUN_TIMEOUT "$work/run.sh" "${ids[@]}" || failed=1
fi

exit $failed
