# Helpers of benches/load/run.sh, sourced by it: ports, config templates,
# background processes, readiness, CPU accounting and wrk's output. They use
# run.sh's variables ($tmp, $pids, $clk_tck is set here) and functions (die, log).

# Distinct free loopback ports: all sockets are held open until every port is
# chosen, so the same port cannot come back twice.
free_ports() {
    python3 - "$1" <<'PY'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
PY
}

# render TEMPLATE OUTPUT KEY=VALUE...: replaces @KEY@ with VALUE.
render() {
    local template=$1 output=$2 kv script=()
    shift 2
    for kv in "$@"; do script+=(-e "s|@${kv%%=*}@|${kv#*=}|g"); done
    sed "${script[@]}" "$template" >"$output"
    ! grep -q '@[A-Z_]*@' "$output" || die "unfilled placeholder in $output"
}

# start NAME LOG CMD...: background process, remembered for the trap.
# Sets $last_pid (the command's own pid: taskset and env exec into it).
start() {
    local name=$1 logfile=$2
    shift 2
    "$@" >"$logfile" 2>&1 &
    last_pid=$!
    pids+=("$last_pid")
    log "started $name (pid $last_pid)"
}

# http_code URL [CURL ARGS...]: the status, or 000 if nothing answered.
http_code() {
    curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$@" || true
}

# wait_ready NAME PID LOG URL [CURL ARGS...]: polls until 200.
wait_ready() {
    local name=$1 pid=$2 logfile=$3 deadline
    shift 3
    deadline=$(($(date +%s) + 30))
    until [[ "$(http_code "$@")" == 200 ]]; do
        if ! kill -0 "$pid" 2>/dev/null; then
            cat "$logfile" >&2
            die "$name exited before serving"
        fi
        (($(date +%s) < deadline)) || { cat "$logfile" >&2; die "$name not ready after 30 s"; }
        sleep 0.05
    done
}

# expect NAME WANT URL [CURL ARGS...]: one request, checking the status.
expect() {
    local name=$1 want=$2 got
    shift 2
    got="$(http_code "$@")"
    [[ "$got" == "$want" ]] || die "$name: expected $want, got $got from $*"
    log "$name: $want ok"
}

# rss_kb PID: resident set of the whole process.
rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }

# median: of the numbers on stdin.
median() {
    sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print "nan"; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# Other load on the machine (the brief expects concurrent compiles) is the
# main source of noise, so every measured run also reports how much CPU went
# to anything but the benchmark: busy time from /proc/stat (all but idle and
# iowait, steal included), less the CPU time of the upstream, the proxy under
# test (each with its child processes) and wrk. Loopback softirq work is
# charged to the process it ran in, so it cancels out, except what ksoftirqd
# picks up. Approximate, but it tells a disturbed run from a clean one.
clk_tck=$(getconf CLK_TCK)
cpu_busy_ticks() { awk '$1 == "cpu" { print $2 + $3 + $4 + $7 + $8 + $9; exit }' /proc/stat; }
# tree_ticks PID...: utime + stime of each process and its direct children.
tree_ticks() {
    local pid p total=0 f
    for pid in "$@"; do
        for p in "$pid" $(ps -o pid= --ppid "$pid"); do
            # Neither nginx nor weir has a space in its name, so fields split cleanly.
            read -r -a f <"/proc/$p/stat" 2>/dev/null || continue
            total=$((total + f[13] + f[14]))
        done
    done
    echo "$total"
}
# own_ticks PID...: tree_ticks of the servers plus the CPU time of the
# harness's finished children (wrk among them). `times` must run in this very
# shell (a subshell's children start from zero), hence a file, not a pipe,
# and the result in $ticks rather than on stdout.
own_ticks() {
    times >"$tmp/times"
    ticks=$(($(tree_ticks "$@") + $(children_ticks "$tmp/times")))
}
children_ticks() {
    awk -v hz="$clk_tck" 'NR == 2 {
        t = 0
        for (i = 1; i <= 2; i++) { split($i, a, /[ms]/); t += a[1] * 60 + a[2] }
        printf "%d\n", t * hz
    }' "$1"
}

# parse_wrk FILE: "req/s p50_us p99_us non2xx socket_errors".
parse_wrk() {
    awk '
        function us(t,   n, u) {
            n = t + 0; u = t; sub(/^[0-9.]+/, "", u)
            if (u == "us") return n
            if (u == "ms") return n * 1000
            if (u == "s") return n * 1000000
            if (u == "m") return n * 60000000
            return -1
        }
        $1 == "Requests/sec:" { rps = $2 }
        $1 == "50%" { p50 = us($2) }
        $1 == "99%" { p99 = us($2) }
        /Non-2xx or 3xx responses:/ { bad = $NF }
        /Socket errors:/ { gsub(/,/, ""); errs = $4 + $6 + $8 + $10 }
        END { printf "%s %s %s %d %d\n", rps, p50, p99, bad, errs }
    ' "$1"
}

