#!/usr/bin/env bash
# Run every fuzz target in fuzz/ for a bounded time (see fuzz/README.md).
# For each target, first replay the kept regression inputs and the seeds
# one by one, then fuzz. Exits non-zero if any input crashed, naming the
# target and the input.
#
#   WEIR_FUZZ_SECONDS   fuzzing time per target (default 20)
#   WEIR_FUZZ_TARGETS   targets to run, space-separated (default: all)
#   CARGO_TARGET_DIR    builds go to $CARGO_TARGET_DIR/fuzz (default
#                       target/fuzz), apart from the stable builds
#
# Needs the nightly toolchain (cargo-fuzz instruments with nightly-only
# flags); installs cargo-fuzz from crates.io if it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

log() { printf '==> %s\n' "$*" >&2; }

seconds=${WEIR_FUZZ_SECONDS:-20}
[[ $seconds =~ ^[0-9]+$ ]] || { log "WEIR_FUZZ_SECONDS must be a whole number of seconds, not '$seconds'"; exit 2; }

if ! cargo +nightly --version >/dev/null 2>&1; then
    log "the nightly Rust toolchain is missing: cargo-fuzz needs it (rustup toolchain install nightly)"
    exit 2
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    log "installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi

# No sanitizer: the code under test is safe Rust, and instrumenting
# wasmtime and its compiler for AddressSanitizer makes the build several
# times slower (fuzz/README.md has the numbers). Panics, failed assertions,
# timeouts and runaway memory are what the targets catch.
build_flags=(-s none --target-dir "${CARGO_TARGET_DIR:-$root/target}/fuzz")

if [[ -n ${WEIR_FUZZ_TARGETS:-} ]]; then
    read -r -a targets <<<"$WEIR_FUZZ_TARGETS"
else
    mapfile -t targets < <(cargo +nightly fuzz list)
fi

log "building ${#targets[@]} fuzz targets"
cargo +nightly fuzz build "${build_flags[@]}"

failed=()
logs=$(mktemp -d)
for target in "${targets[@]}"; do
    regressions=fuzz/regressions/$target
    seeds=fuzz/seeds/$target
    corpus=fuzz/corpus/$target
    mkdir -p "$corpus" "fuzz/artifacts/$target"
    options=(-timeout=30 -rss_limit_mb=4096)
    if [[ -f fuzz/dicts/$target.dict ]]; then
        options+=("-dict=fuzz/dicts/$target.dict")
    fi

    # Replay: each kept input once, by name, so a failure names it.
    inputs=()
    for dir in "$regressions" "$seeds"; do
        if [[ -d $dir ]]; then
            mapfile -t -O "${#inputs[@]}" inputs < <(find "$dir" -type f ! -name '.*' | sort)
        fi
    done
    if ((${#inputs[@]})); then
        if ! cargo +nightly fuzz run "${build_flags[@]}" "$target" "${inputs[@]}" -- "${options[@]}" \
            >"$logs/$target.replay" 2>&1; then
            input=$(grep -o 'Running: .*' "$logs/$target.replay" | tail -n 1 | cut -d' ' -f2-)
            tail -n 30 "$logs/$target.replay" >&2
            log "FAIL $target: the kept input ${input:-?} crashes"
            failed+=("$target: ${input:-?}")
            continue
        fi
        log "$target: ${#inputs[@]} kept inputs replayed"
    fi

    # Fuzz, starting from the corpus so far, the seeds and the regressions.
    marker=$logs/$target.start
    touch "$marker"
    dirs=("$corpus")
    for dir in "$seeds" "$regressions"; do
        if [[ -d $dir ]]; then
            dirs+=("$dir")
        fi
    done
    if cargo +nightly fuzz run "${build_flags[@]}" "$target" "${dirs[@]}" -- \
        "${options[@]}" -max_total_time="$seconds" >"$logs/$target.fuzz" 2>&1; then
        log "$target: $(grep -o 'Done [0-9]* runs in [0-9]* second(s)' "$logs/$target.fuzz" | tail -n 1)"
    else
        artifact=$(find "fuzz/artifacts/$target" -type f -newer "$marker" | head -n 1)
        tail -n 30 "$logs/$target.fuzz" >&2
        log "FAIL $target: crashed on ${artifact:-an input (see above)}"
        failed+=("$target: ${artifact:-?}")
    fi
done
rm -rf "$logs"

if ((${#failed[@]})); then
    log "fuzzing found ${#failed[@]} failing target(s):"
    printf '    %s\n' "${failed[@]}" >&2
    log "reproduce: cargo +nightly fuzz run ${build_flags[*]} TARGET INPUT"
    exit 1
fi
log "fuzzing: no crash in ${#targets[@]} targets"
