#!/usr/bin/env bash
# Load benchmark: Weir against nginx and against the bare upstream, on loopback.
#
#   benches/load/run.sh
#   DURATION=20s CONNECTIONS=64 RUNS=5 benches/load/run.sh
#
# Cases, all driven by the same wrk command against the same upstream nginx:
#   direct        wrk -> upstream
#   nginx         wrk -> nginx reverse proxy (keep-alive upstream) -> upstream
#   hyper         wrk -> bare hyper reverse proxy (benches/bare-proxy:
#                 hyper's HTTP/1 server and pooled client, one thread, nothing
#                 else) -> upstream: what a proxy on hyper carries before any
#                 of Weir's own work
#   weir          wrk -> Weir, no plugins -> upstream
#   weir-chain    wrk -> Weir, api-key-auth + rate-limit + headers (pooled) -> upstream
#   weir-fresh    the same chain with every plugin in instance = "fresh"
#   base, base-chain  with BASELINE set: weir and weir-chain again from another
#                 build, interleaved with the rest, for a before/after in one run
# Then, with only the upstream running:
#   memory        VmRSS of an idle Weir with 10 plugins loaded
#   start-up      ms from process start to the first 200, warm compile cache
#   hot swap      ms from renaming a new plugin build over the old one until
#                 the new version serves
#
# Environment (defaults in brackets):
#   DURATION [10s]  measured wrk run        WARMUP [2s]   unmeasured wrk run before each
#   CONNECTIONS [32] wrk connections        WRK_THREADS [1]
#   RUNS [3]        measured runs per case  STARTS [5]    timed start-ups
#   SWAPS [10]      timed plugin swaps
#   ACCESS_LOG [off] on: Weir writes its access log (JSON lines, to a file in
#                   the temp dir); off: none, as nginx here has none
#   SKIP_BUILD [0]  1: use the binaries already in the target dir
#   BASELINE []     another `weir` binary to measure beside this tree's (cases
#                   base and base-chain), e.g. a release build of an earlier commit
#   KEEP_TMP [0]    1: keep the temp dir (configs, logs, raw wrk output)
#   RESULTS [benches/load/RESULTS.md]  where the report is written
#
# Writes the summary to stdout and the full report to $RESULTS.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cd "$root"

DURATION="${DURATION:-10s}"
WARMUP="${WARMUP:-2s}"
CONNECTIONS="${CONNECTIONS:-32}"
WRK_THREADS="${WRK_THREADS:-1}"
RUNS="${RUNS:-3}"
STARTS="${STARTS:-5}"
SWAPS="${SWAPS:-10}"
SKIP_BUILD="${SKIP_BUILD:-0}"
ACCESS_LOG="${ACCESS_LOG:-off}"
KEEP_TMP="${KEEP_TMP:-0}"
RESULTS="${RESULTS:-$here/RESULTS.md}"
BASELINE="${BASELINE:-}"
API_KEY="bench-key"
command_line="DURATION=$DURATION WARMUP=$WARMUP CONNECTIONS=$CONNECTIONS WRK_THREADS=$WRK_THREADS RUNS=$RUNS STARTS=$STARTS ACCESS_LOG=$ACCESS_LOG benches/load/run.sh"
started_ns=$(date +%s%N)
ncpus=$(nproc) # before pinning: afterwards nproc counts only the harness's own CPU

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'run.sh: %s\n' "$*" >&2; exit 1; }
[[ $ACCESS_LOG == on || $ACCESS_LOG == off ]] || die "ACCESS_LOG must be on or off, not $ACCESS_LOG"

# ---------------------------------------------------------------- tools ----
missing=()
command -v wrk >/dev/null || missing+=(wrk)
command -v nginx >/dev/null || [[ -x /usr/sbin/nginx ]] || missing+=(nginx)
if ((${#missing[@]})); then
    log "installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
NGINX="$(command -v nginx || echo /usr/sbin/nginx)"
for tool in curl python3 awk; do
    command -v "$tool" >/dev/null || die "$tool is required"
done

# ---------------------------------------------------------------- build ----
target_dir="${CARGO_TARGET_DIR:-$root/target}"
WEIR="$target_dir/release/weir"
if [[ "$SKIP_BUILD" != 1 ]]; then
    rustup target list --installed | grep -qx wasm32-wasip2 || rustup target add wasm32-wasip2
    log "building weir and the plugins (release)"
    cargo build --release -p weir
    cargo build --release -p weir-bare-proxy
    cargo build --profile plugin --target wasm32-wasip2 -p api-key-auth -p rate-limit -p headers \
        -p guest-version-a -p guest-version-b
fi
[[ -x "$WEIR" ]] || die "$WEIR is missing (build failed, or SKIP_BUILD=1 without a build)"
BARE="$target_dir/release/bare-proxy"
[[ -x "$BARE" ]] || die "$BARE is missing (build failed, or SKIP_BUILD=1 without a build)"
[[ -z "$BASELINE" || -x "$BASELINE" ]] || die "BASELINE=$BASELINE is not an executable"
# Fails early if the binary predates the --threads flag.
"$WEIR" run --help | grep -q -- --threads || die "$WEIR has no --threads option; rebuild"
# What the binary was built from; host/ may be changing under us.
commit="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
dirty="$(git status --porcelain -- host sdk plugins wit Cargo.toml Cargo.lock 2>/dev/null | wc -l)"
((dirty == 0)) || commit="$commit + uncommitted changes in $dirty file(s) under host/ sdk/ plugins/ wit/"

# ------------------------------------------------------------- temp dir ----
tmp="$(mktemp -d /tmp/weir-load.XXXXXX)"
# nginx workers run as an unprivileged user; they only need to traverse it.
chmod 755 "$tmp"
mkdir -p "$tmp/plugins" "$tmp/cache" "$tmp/wrk" "$tmp/results"
for plugin in api-key-auth rate-limit headers; do
    cp "$target_dir/wasm32-wasip2/plugin/${plugin//-/_}.wasm" "$tmp/plugins/$plugin.wasm"
done

# Every background process goes in here; the EXIT trap stops each by pid.
pids=()
stop_pid() {
    local pid=$1 i
    kill -TERM "$pid" 2>/dev/null || return 0
    for ((i = 0; i < 50; i++)); do
        kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}
# stop_and_forget PID: for processes stopped before the end, so that the trap
# never signals a pid that may since have been reused.
stop_and_forget() {
    local pid=$1 keep=() p
    stop_pid "$pid"
    for p in "${pids[@]}"; do [[ "$p" == "$pid" ]] || keep+=("$p"); done
    pids=("${keep[@]}")
}
cleanup() {
    local pid
    for pid in "${pids[@]}"; do stop_pid "$pid"; done
    if [[ "$KEEP_TMP" == 1 ]]; then log "kept $tmp"; else rm -rf "$tmp"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ------------------------------------------------------------- pinning -----
# Two cores: the proxy under test gets CPU 0 to itself; wrk and the upstream
# share CPU 1. The upstream is trivial (a fixed `return 200`) and is the same
# for every case, so putting it beside the load generator costs every case
# alike, while the proxy never competes with either. The harness shell itself
# moves to CPU 1 too, so that curl probes and everything else it spawns stay
# off the proxy's core.
if command -v taskset >/dev/null && ((ncpus >= 2)); then
    pin_proxy=(taskset -c 0)
    pin_load=(taskset -c 1)
    taskset -pc 1 $$ >/dev/null
    pinning="proxy under test (nginx, bare hyper or Weir) on CPU 0; wrk, upstream nginx and the harness on CPU 1"
else
    pin_proxy=()
    pin_load=()
    pinning="none (taskset missing or fewer than 2 CPUs)"
    log "not pinning: $pinning"
fi

# ------------------------------------------------------------- helpers -----
# shellcheck source=benches/load/lib.sh
source "$here/lib.sh"

# ------------------------------------------------------------- servers -----
read -r upstream_port proxy_port weir_port chain_port fresh_port rss_port startup_port admin_port swap_port \
    hyper_port base_port base_chain_port < <(free_ports 12)
mkdir -p "$tmp/upstream-tmp" "$tmp/proxy-tmp"

render "$here/nginx-upstream.conf.in" "$tmp/upstream.conf" PREFIX="$tmp" UPSTREAM_PORT="$upstream_port"
render "$here/nginx-proxy.conf.in" "$tmp/proxy.conf" PREFIX="$tmp" UPSTREAM_PORT="$upstream_port" PROXY_PORT="$proxy_port"
common=(PLUGIN_DIR="$tmp/plugins" CACHE_DIR="$tmp/cache" UPSTREAM_PORT="$upstream_port" API_KEY="$API_KEY")
# access_log SUFFIX: the access log setting for one Weir case.
access_log() { if [[ $ACCESS_LOG == on ]]; then echo "$tmp/access-$1.log"; else echo off; fi; }
render "$here/weir-plain.toml.in" "$tmp/weir.toml" "${common[@]}" PORT="$weir_port" ACCESS_LOG="$(access_log plain)"
render "$here/weir-chain.toml.in" "$tmp/weir-chain.toml" "${common[@]}" PORT="$chain_port" INSTANCE=pooled \
    ACCESS_LOG="$(access_log chain)"
render "$here/weir-chain.toml.in" "$tmp/weir-fresh.toml" "${common[@]}" PORT="$fresh_port" INSTANCE=fresh \
    ACCESS_LOG="$(access_log fresh)"
if [[ -n "$BASELINE" ]]; then
    # Its own compile cache: the two builds never share compiled code.
    mkdir -p "$tmp/cache-base"
    base_common=(PLUGIN_DIR="$tmp/plugins" CACHE_DIR="$tmp/cache-base" UPSTREAM_PORT="$upstream_port" API_KEY="$API_KEY")
    render "$here/weir-plain.toml.in" "$tmp/base.toml" "${base_common[@]}" PORT="$base_port" ACCESS_LOG="$(access_log base)"
    render "$here/weir-chain.toml.in" "$tmp/base-chain.toml" "${base_common[@]}" PORT="$base_chain_port" \
        INSTANCE=pooled ACCESS_LOG="$(access_log base-chain)"
fi

# -e: nginx would otherwise open its compiled-in error log before reading the config.
start upstream "$tmp/upstream.out" "${pin_load[@]}" "$NGINX" -p "$tmp" -e "$tmp/upstream.error.log" -c "$tmp/upstream.conf" -g 'daemon off;'
upstream_pid=$last_pid
wait_ready upstream "$last_pid" "$tmp/upstream.out" "http://127.0.0.1:$upstream_port/"
declare -A server_pid=([direct]="")
start nginx "$tmp/proxy.out" "${pin_proxy[@]}" "$NGINX" -p "$tmp" -e "$tmp/proxy.error.log" -c "$tmp/proxy.conf" -g 'daemon off;'
server_pid[nginx]=$last_pid
wait_ready nginx "$last_pid" "$tmp/proxy.out" "http://127.0.0.1:$proxy_port/"
start hyper "$tmp/hyper.out" "${pin_proxy[@]}" "$BARE" "127.0.0.1:$hyper_port" "127.0.0.1:$upstream_port"
server_pid[hyper]=$last_pid
wait_ready hyper "$last_pid" "$tmp/hyper.out" "http://127.0.0.1:$hyper_port/"

key=(-H "x-api-key: $API_KEY")
# The Weir instances start one after the other so that only the first
# compiles the plugins and the others load them from the cache.
# Each entry: case, port, binary.
instances=("weir $weir_port $WEIR" "weir-chain $chain_port $WEIR" "weir-fresh $fresh_port $WEIR")
[[ -z "$BASELINE" ]] || instances+=("base $base_port $BASELINE" "base-chain $base_chain_port $BASELINE")
for instance in "${instances[@]}"; do
    read -r name port binary <<<"$instance"
    WEIR_LOG=warn start "$name" "$tmp/$name.log" "${pin_proxy[@]}" "$binary" run --config "$tmp/$name.toml" --threads 1
    server_pid[$name]=$last_pid
    wait_ready "$name" "$last_pid" "$tmp/$name.log" "${key[@]}" "http://127.0.0.1:$port/"
done

# ---------------------------------------------------------- correctness ----
expect direct 200 "${key[@]}" "http://127.0.0.1:$upstream_port/"
expect nginx 200 "${key[@]}" "http://127.0.0.1:$proxy_port/"
expect hyper 200 "${key[@]}" "http://127.0.0.1:$hyper_port/"
expect weir 200 "${key[@]}" "http://127.0.0.1:$weir_port/"
chains=(weir-chain:$chain_port weir-fresh:$fresh_port)
[[ -z "$BASELINE" ]] || chains+=(base-chain:$base_chain_port)
for c in "${chains[@]}"; do
    name=${c%%:*} port=${c#*:}
    expect "$name (key)" 200 "${key[@]}" "http://127.0.0.1:$port/"
    expect "$name (no key)" 401 "http://127.0.0.1:$port/"
    expect "$name (wrong key)" 401 -H "x-api-key: nope" "http://127.0.0.1:$port/"
    # The whole chain ran: headers added its response header, rate-limit its fields.
    head="$(curl -s -D - -o /dev/null "${key[@]}" "http://127.0.0.1:$port/" | tr -d '\r')"
    grep -qi '^x-powered-by: weir$' <<<"$head" || die "$name: headers plugin did not run: $head"
    grep -qi '^ratelimit-limit: 1000000000$' <<<"$head" || die "$name: rate-limit did not run: $head"
    log "$name: chain headers ok"
done

# ---------------------------------------------------------------- load -----
cases=(direct nginx hyper weir weir-chain weir-fresh)
[[ -z "$BASELINE" ]] || cases+=(base base-chain)
declare -A url=(
    [direct]="http://127.0.0.1:$upstream_port/"
    [nginx]="http://127.0.0.1:$proxy_port/"
    [hyper]="http://127.0.0.1:$hyper_port/"
    [base]="http://127.0.0.1:$base_port/"
    [base-chain]="http://127.0.0.1:$base_chain_port/"
    [weir]="http://127.0.0.1:$weir_port/"
    [weir-chain]="http://127.0.0.1:$chain_port/"
    [weir-fresh]="http://127.0.0.1:$fresh_port/"
)
declare -A label=(
    [direct]="upstream directly"
    [nginx]="nginx proxy (keep-alive)"
    [hyper]="bare hyper proxy (reference)"
    [base]="baseline build, no plugins"
    [base-chain]="baseline build, auth + rate-limit + headers"
    [weir]="Weir, no plugins"
    [weir-chain]="Weir, auth + rate-limit + headers"
    [weir-fresh]="Weir, same chain, fresh instances"
)
# Every case gets the same request, key included, so only the path differs.
wrk_cmd=(wrk -t"$WRK_THREADS" -c"$CONNECTIONS" --latency -H "x-api-key: $API_KEY")
wrk_shown="wrk -t$WRK_THREADS -c$CONNECTIONS --latency -H 'x-api-key: $API_KEY'"

load_before="$(cut -d' ' -f1-3 /proc/loadavg)"
# Round-robin: each run measures every case once, and each run starts one
# case further on, so slow drift (another build, thermal) spreads over all
# cases instead of landing on whichever always comes first or last.
for ((run = 1; run <= RUNS; run++)); do
    for ((i = 0; i < ${#cases[@]}; i++)); do
        c=${cases[$(((i + run - 1) % ${#cases[@]}))]}
        "${pin_load[@]}" "${wrk_cmd[@]}" -d"$WARMUP" "${url[$c]}" >/dev/null 2>&1
        out="$tmp/wrk/$c.$run.txt"
        watched=("$upstream_pid")
        [[ -z "${server_pid[$c]}" ]] || watched+=("${server_pid[$c]}")
        own_ticks "${watched[@]}"
        own0=$ticks busy0=$(cpu_busy_ticks) t0=$(date +%s%N)
        "${pin_load[@]}" "${wrk_cmd[@]}" -d"$DURATION" "${url[$c]}" >"$out" 2>&1 || { cat "$out" >&2; die "wrk failed on $c"; }
        busy1=$(cpu_busy_ticks) t1=$(date +%s%N)
        own_ticks "${watched[@]}"
        own1=$ticks
        other=$(awk -v b=$((busy1 - busy0)) -v o=$((own1 - own0)) -v ns=$((t1 - t0)) -v hz="$clk_tck" -v n="$ncpus" \
            'BEGIN { v = 100 * (b - o) / (ns / 1e9 * hz * n); printf "%.0f", v < 0 ? 0 : v }')
        read -r rps p50 p99 bad errs < <(parse_wrk "$out")
        [[ -n "$rps" && "$p99" != -1 ]] || { cat "$out" >&2; die "cannot parse wrk output for $c"; }
        echo "$run $rps $p50 $p99 $bad $errs $other" >>"$tmp/results/$c"
        log "run $run/$RUNS $c: $rps req/s, p50 ${p50} us, p99 ${p99} us, non-2xx $bad, socket errors $errs, other CPU ${other}%"
        ((bad == 0)) || log "WARNING: $c answered $bad non-2xx responses in run $run"
    done
done

declare -A med_rps med_p50 med_p99
for c in "${cases[@]}"; do
    med_rps[$c]=$(awk '{ print $2 }' "$tmp/results/$c" | median)
    med_p50[$c]=$(awk '{ print $3 }' "$tmp/results/$c" | median)
    med_p99[$c]=$(awk '{ print $4 }' "$tmp/results/$c" | median)
done
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }'; }

table="$(
    echo "| case | req/s | p50 (µs) | p99 (µs) | req/s ÷ nginx | req/s ÷ bare hyper | req/s ÷ direct | p99 ÷ nginx | p99 ÷ direct |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
    for c in "${cases[@]}"; do
        printf '| %s | %.0f | %.0f | %.0f | %s | %s | %s | %s | %s |\n' "${label[$c]}" \
            "${med_rps[$c]}" "${med_p50[$c]}" "${med_p99[$c]}" \
            "$(ratio "${med_rps[$c]}" "${med_rps[nginx]}")" "$(ratio "${med_rps[$c]}" "${med_rps[hyper]}")" \
            "$(ratio "${med_rps[$c]}" "${med_rps[direct]}")" \
            "$(ratio "${med_p99[$c]}" "${med_p99[nginx]}")" "$(ratio "${med_p99[$c]}" "${med_p99[direct]}")"
    done
)"
raw="$(
    echo "| case | run | req/s | p50 (µs) | p99 (µs) | non-2xx | socket errors | other CPU load |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|"
    for c in "${cases[@]}"; do
        while read -r run rps p50 p99 bad errs other; do
            printf '| %s | %s | %.0f | %.0f | %.0f | %s | %s | %s%% |\n' "$c" "$run" "$rps" "$p50" "$p99" "$bad" "$errs" "$other"
        done <"$tmp/results/$c"
    done
)"
load_after_bench="$(cut -d' ' -f1-3 /proc/loadavg)"
disturbed=$(cat "$tmp"/results/* | awk '$7 > 10' | wc -l)
if ((disturbed > 0)); then
    disturbed_note="**$disturbed of $((RUNS * ${#cases[@]})) runs had more than 10% other CPU load**: treat their figures with care, or rerun on a quiet machine."
else
    disturbed_note="No run had more than 10% other CPU load."
fi
# --threads sets the request workers; the process has a few more of its own.
weir_threads="$(for c in weir weir-chain weir-fresh; do awk '/^Threads:/ { printf "%s ", $2 }' "/proc/${server_pid[$c]}/status"; done)"

# The proxies are done; the rest runs with only the upstream (pids[0]) up.
for ((i = ${#pids[@]} - 1; i >= 1; i--)); do stop_and_forget "${pids[$i]}"; done

# -------------------------------------------------------------- memory -----
# Ten plugins by name, each a byte-identical copy of a first-party plugin,
# one per route, so each is loaded and configured as a plugin of its own.
mkdir -p "$tmp/rss/plugins" "$tmp/rss/cache"
rss_conf="$tmp/rss/weir.toml"
{
    echo "[[listeners]]"
    echo "address = \"127.0.0.1:$rss_port\""
    echo
    echo "[plugins]"
    echo "dir = \"$tmp/rss/plugins\""
    echo "cache_dir = \"$tmp/rss/cache\""
    echo
    echo "[upstreams.up]"
    echo "targets = [\"127.0.0.1:$upstream_port\"]"
} >"$rss_conf"
rss_plugins=(api-key-auth-1 api-key-auth-2 api-key-auth-3 api-key-auth-4 headers-1 headers-2 headers-3 rate-limit-1 rate-limit-2 rate-limit-3)
n=0
for p in "${rss_plugins[@]}"; do
    n=$((n + 1))
    base=${p%-*}
    cp "$tmp/plugins/$base.wasm" "$tmp/rss/plugins/$p.wasm"
    case $base in
        api-key-auth) config="{ keys = { bench = \"$API_KEY\" } }" ;;
        headers) config="{ response = { add = { x-powered-by = \"weir\" } } }" ;;
        rate-limit)
            config="{ capacity = 1000000000, refill_per_second = 1000000000 }"
            printf '\n[plugin.%s]\nkv = true\n' "$p" >>"$rss_conf"
            ;;
    esac
    printf '\n[[routes]]\nname = "r%d"\npath_prefix = "/r%d"\nupstream = "up"\n\n[[routes.plugins]]\nname = "%s"\nconfig = %s\n' \
        "$n" "$n" "$p" "$config" >>"$rss_conf"
done
WEIR_LOG=warn start weir-10-plugins "$tmp/rss/weir.log" "${pin_proxy[@]}" "$WEIR" run --config "$rss_conf" --threads 1
rss_pid=$last_pid
wait_ready weir-10-plugins "$rss_pid" "$tmp/rss/weir.log" "${key[@]}" "http://127.0.0.1:$rss_port/r1"
for ((n = 1; n <= ${#rss_plugins[@]}; n++)); do
    expect "weir-10-plugins /r$n" 200 "${key[@]}" "http://127.0.0.1:$rss_port/r$n"
done
sleep 2 # let allocator and background threads settle before reading RSS
rss_10=$(rss_kb "$rss_pid")
stop_and_forget "$rss_pid"

# The same measure for Weir with no plugin at all, for comparison.
mkdir -p "$tmp/rss0/plugins" "$tmp/rss0/cache"
render "$here/weir-plain.toml.in" "$tmp/rss0/weir.toml" PLUGIN_DIR="$tmp/rss0/plugins" CACHE_DIR="$tmp/rss0/cache" \
    UPSTREAM_PORT="$upstream_port" PORT="$rss_port" ACCESS_LOG=off
WEIR_LOG=warn start weir-0-plugins "$tmp/rss0/weir.log" "${pin_proxy[@]}" "$WEIR" run --config "$tmp/rss0/weir.toml" --threads 1
rss0_pid=$last_pid
wait_ready weir-0-plugins "$rss0_pid" "$tmp/rss0/weir.log" "http://127.0.0.1:$rss_port/"
sleep 2
rss_0=$(rss_kb "$rss0_pid")
stop_and_forget "$rss0_pid"
log "idle RSS: 10 plugins $rss_10 kB, no plugins $rss_0 kB"

# ------------------------------------------------------------- start-up ----
# The chain config with its own cache dir and an admin API: one untimed start
# fills the cache, then each timed start must report every plugin as loaded
# from it (checked through GET /plugins), so the figure is the warm start.
mkdir -p "$tmp/startup"
render "$here/weir-chain.toml.in" "$tmp/startup/weir.toml" PLUGIN_DIR="$tmp/plugins" CACHE_DIR="$tmp/startup/cache" \
    UPSTREAM_PORT="$upstream_port" API_KEY="$API_KEY" PORT="$startup_port" INSTANCE=pooled ACCESS_LOG=off
printf '\n[admin]\naddress = "127.0.0.1:%s"\n' "$admin_port" >>"$tmp/startup/weir.toml"
startup_url="http://127.0.0.1:$startup_port/"

WEIR_LOG=warn start weir-cache-fill "$tmp/startup/fill.log" "${pin_proxy[@]}" "$WEIR" run --config "$tmp/startup/weir.toml" --threads 1
wait_ready weir-cache-fill "$last_pid" "$tmp/startup/fill.log" "${key[@]}" "$startup_url"
stop_and_forget "$last_pid"

startup_ms=()
for ((s = 1; s <= STARTS; s++)); do
    t0=$(date +%s%N)
    WEIR_LOG=warn "${pin_proxy[@]}" "$WEIR" run --config "$tmp/startup/weir.toml" --threads 1 >"$tmp/startup/start.$s.log" 2>&1 &
    spid=$!
    pids+=("$spid")
    # No sleep: each curl costs a few ms of its own, which bounds the resolution.
    until [[ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "${key[@]}" "$startup_url" || true)" == 200 ]]; do
        kill -0 "$spid" 2>/dev/null || { cat "$tmp/startup/start.$s.log" >&2; die "weir exited during start-up $s"; }
        (($(date +%s%N) - t0 < 30000000000)) || die "weir start-up $s: no 200 within 30 s"
    done
    t1=$(date +%s%N)
    ms=$(((t1 - t0) / 1000000))
    plugins_json="$(curl -s "http://127.0.0.1:$admin_port/plugins")"
    python3 -c '
import json, sys
plugins = json.loads(sys.argv[1])["plugins"]
cold = [p.get("name") for p in plugins if p.get("compiled_from_cache") is not True]
sys.exit("compiled, not from cache: %s" % cold if cold else 0)
' "$plugins_json" || die "start-up $s was not warm"
    startup_ms+=("$ms")
    log "start-up $s/$STARTS: $ms ms to the first 200 (all plugins from cache)"
    stop_and_forget "$spid"
done
startup_median=$(printf '%s\n' "${startup_ms[@]}" | median)
startup_min=$(printf '%s\n' "${startup_ms[@]}" | sort -n | head -1)
startup_max=$(printf '%s\n' "${startup_ms[@]}" | sort -n | tail -1)

# ------------------------------------------------------------- hot swap ----
# Two builds of one plugin that tag responses with `x-version: a` or `b`.
# Each swap renames the other build over the plugin file (as `mv` does) and
# polls until responses carry the new version: the file-watch debounce,
# reading and compiling (from the cache after the first two), `configure`
# and the swap itself.
wasm_dir="$target_dir/wasm32-wasip2/plugin"
mkdir -p "$tmp/swap/plugins"
cp "$wasm_dir/guest_version_a.wasm" "$tmp/swap/plugins/version.wasm"
cat >"$tmp/swap/weir.toml" <<CONFIG
[[listeners]]
address = "127.0.0.1:$swap_port"
[plugins]
dir = "$tmp/swap/plugins"
cache_dir = "$tmp/swap/cache"
[upstreams.up]
targets = ["127.0.0.1:$upstream_port"]
[[routes]]
name = "swap"
upstream = "up"
[[routes.plugins]]
name = "version"
CONFIG
swap_url="http://127.0.0.1:$swap_port/"
WEIR_LOG=warn start weir-swap "$tmp/swap/weir.log" "${pin_proxy[@]}" "$WEIR" run --config "$tmp/swap/weir.toml" --threads 1
swap_pid=$last_pid
wait_ready weir-swap "$swap_pid" "$tmp/swap/weir.log" "$swap_url"
served_version() {
    curl -s -D - -o /dev/null --max-time 2 "$swap_url" | tr -d '\r' | awk -F': ' 'tolower($1) == "x-version" { print $2 }'
}
swap_ms=()
for ((s = 1; s <= SWAPS; s++)); do
    if ((s % 2 == 1)); then version=b; else version=a; fi
    cp "$wasm_dir/guest_version_$version.wasm" "$tmp/swap/plugins/.version.next"
    t0=$(date +%s%N)
    mv "$tmp/swap/plugins/.version.next" "$tmp/swap/plugins/version.wasm"
    until [[ "$(served_version)" == "$version" ]]; do
        kill -0 "$swap_pid" 2>/dev/null || { cat "$tmp/swap/weir.log" >&2; die "weir exited during swap $s"; }
        (($(date +%s%N) - t0 < 30000000000)) || die "swap $s: version $version not served within 30 s"
    done
    ms=$((($(date +%s%N) - t0) / 1000000))
    swap_ms+=("$ms")
    log "swap $s/$SWAPS: version $version serving after $ms ms"
done
stop_and_forget "$swap_pid"
swap_median=$(printf '%s\n' "${swap_ms[@]}" | median)
swap_max=$(printf '%s\n' "${swap_ms[@]}" | sort -n | tail -1)

# -------------------------------------------------------------- report -----
elapsed_s=$((($(date +%s%N) - started_ns) / 1000000000))
cpu_model="$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)"
nginx_version="$("$NGINX" -v 2>&1 | sed 's/^nginx version: //')"
wrk_version="$( (wrk -v 2>&1 || true) | awk 'NR == 1 { print $1, $2 }')"
weir_version="$("$WEIR" --version)"

report="$(
    cat <<EOF
# Load benchmark results

Generated by \`benches/load/run.sh\` on $(date -u '+%Y-%m-%d %H:%M UTC'); the whole run took ${elapsed_s} s.

| | |
|---|---|
| command | \`$command_line\` |
| machine | $ncpus CPUs (\`nproc\`), ${cpu_model}, kernel $(uname -r) |
| load average before / after the load runs | $load_before / $load_after_bench |
| Weir | $weir_version, commit $commit, release build, \`weir run --threads 1\`, \`WEIR_LOG=warn\`; OS threads while serving (no plugins, chain, fresh): $weir_threads|
| Weir's access log | $ACCESS_LOG (\`ACCESS_LOG\`) |
| nginx | $nginx_version, \`worker_processes 1\`, \`access_log off\` (proxy and upstream) |
| bare hyper | \`benches/bare-proxy\`: hyper's HTTP/1 server and legacy pooled client on one current-thread runtime; no routing, no header work |
| baseline | ${BASELINE:-none} (\`BASELINE\`: cases base and base-chain) |
| wrk | $wrk_version: \`$wrk_shown -d$DURATION URL\`, after \`-d$WARMUP\` unmeasured |
| runs | $RUNS per case, round-robin across cases; medians shown |
| pinning | $pinning |
| upstream | nginx \`return 200 "ok\\n"\` (text/plain), same instance for every case |

## Throughput and latency (median of $RUNS runs)

$table

Ratios: above 1 means more requests per second, or a longer p99, than the
reference. Every case sends the same request, including \`x-api-key\`.
"Other CPU load" in the table of every run is the share of all CPUs that
went to anything but the benchmark's own processes during that run
(approximate; see run.sh): high values mark runs disturbed by other work.
$disturbed_note

The chain is api-key-auth (one key) → rate-limit (capacity and refill
1000000000, never refusing) → headers (sets \`x-gateway\` on the request,
adds \`x-powered-by\` to the response). Before measuring, each case was
checked: 200 with the key; for the chains also 401 without a key and with a
wrong one, and the \`x-powered-by\` and \`ratelimit-limit\` response headers.

### Every run

$raw

## Memory

Idle \`VmRSS\` (\`/proc/PID/status\`) of \`weir run --threads 1\`, after one
request per route and a 2 s settle:

| config | VmRSS |
|---|---:|
| 10 routes, 10 plugins (api-key-auth-1..4, headers-1..3, rate-limit-1..3; file copies, one per route) | $((rss_10 / 1024)) MiB ($rss_10 kB) |
| 1 route, no plugins | $((rss_0 / 1024)) MiB ($rss_0 kB) |

The ten files are byte-identical copies of three plugins, so the compile
cache (keyed by SHA-256) holds three entries; each name is still loaded,
configured and pooled as a plugin of its own.

## Start-up with a warm compile cache

Milliseconds from launching \`weir run\` (the chain config, its own
\`cache_dir\` filled by an earlier start) to the first 200 through the whole
chain, polled with curl in a tight loop; every timed start reported all its
plugins \`compiled_from_cache\` in \`GET /plugins\`. Each curl costs a few ms,
which bounds the resolution.

| starts | median | min | max | all |
|---:|---:|---:|---:|---|
| $STARTS | ${startup_median} ms | ${startup_min} ms | ${startup_max} ms | ${startup_ms[*]} |

## Hot swap of a plugin

Milliseconds from renaming a new build over a plugin file until responses
carry the new version (the 250 ms file-watch debounce included), $SWAPS
swaps alternating two builds.

| swaps | median | max | all |
|---:|---:|---:|---|
| $SWAPS | ${swap_median} ms | ${swap_max} ms | ${swap_ms[*]} |
EOF
)"
printf '%s\n' "$report" >"$RESULTS"

echo
echo "$table"
echo
echo "$disturbed_note"
echo "Idle VmRSS: 10 plugins $((rss_10 / 1024)) MiB, no plugins $((rss_0 / 1024)) MiB"
echo "Start-up to first 200 (warm cache): median ${startup_median} ms (min ${startup_min}, max ${startup_max}; ${startup_ms[*]})"
echo "Hot swap to the new version serving: median ${swap_median} ms (max ${swap_max}; ${swap_ms[*]})"
echo "Report written to $RESULTS (${elapsed_s} s)"
