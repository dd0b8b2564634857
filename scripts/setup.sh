#!/usr/bin/env bash
# Install what building and testing Weir needs, once; every step is skipped
# when its tool is already there. Called by `make setup` (and so by
# `make test` and `make quickstart`).
#
#   Rust plugins        the wasm32-wasip2 target (rustup)
#   JS/TS plugins       node and npm (Debian); componentize-js comes from npm
#                       per project, pinned in its package.json
#   Python plugins      componentize-py from PyPI, pinned (sdk/python/setup.sh)
#   C plugins           clang, lld, wasi-libc and clang's wasm32 runtime (Debian)
#   AI gateway tests    the OpenAI Python library, pinned (the example's
#                       client.py runs against Weir unchanged)
#   Dashboard test      Chromium and chromedriver (Debian), driven headless
#                       over WebDriver by host/tests/all/dashboard.rs
#   Shared-state tests  redis-server and PostgreSQL (Debian); the tests start
#                       their own servers on free loopback ports
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '==> %s\n' "$*" >&2; }

rustup target list --installed | grep -qx wasm32-wasip2 || {
    log "adding the wasm32-wasip2 Rust target"
    rustup target add wasm32-wasip2
}

debian=()
command -v node >/dev/null || debian+=(nodejs)
command -v npm >/dev/null || debian+=(npm)
{ command -v clang >/dev/null || command -v clang-14 >/dev/null; } || debian+=(clang)
command -v wasm-ld >/dev/null || command -v wasm-ld-14 >/dev/null || debian+=(lld)
[[ -e /usr/lib/wasm32-wasi/libc.a || -e /usr/lib/wasm32-wasi/lib/libc.a ]] || debian+=(wasi-libc)
compgen -G '/usr/lib/llvm-14/lib/clang/*/lib/wasi/libclang_rt.builtins-wasm32.a' >/dev/null || debian+=(libclang-rt-14-dev-wasm32)
command -v chromium >/dev/null || debian+=(chromium)
command -v chromedriver >/dev/null || debian+=(chromium-driver)
command -v redis-server >/dev/null || debian+=(redis-server)
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || debian+=(postgresql)
if ((${#debian[@]})); then
    log "installing Debian packages: ${debian[*]}"
    sudo=()
    ((EUID == 0)) || sudo=(sudo)
    "${sudo[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq "${debian[@]}" >/dev/null
fi

if [[ -x sdk/python/setup.sh ]]; then
    sdk/python/setup.sh
fi

OPENAI_PY=2.8.1
python3 -c "import openai, sys; sys.exit(openai.__version__ != '$OPENAI_PY')" 2>/dev/null || {
    log "installing the OpenAI Python library $OPENAI_PY"
    python3 -m pip install -q "openai==$OPENAI_PY"
}
