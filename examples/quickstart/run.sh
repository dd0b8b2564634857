#!/usr/bin/env bash
# Build the gateway and the first-party plugins, then run the quickstart:
# the demo upstream on 127.0.0.1:9000 and Weir on 127.0.0.1:8080.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cd "$root"

rustup target add wasm32-wasip2 >/dev/null 2>&1 || rustup target add wasm32-wasip2
cargo build --release -p weir
cargo build --profile plugin --target wasm32-wasip2 -p api-key-auth -p rate-limit -p headers

mkdir -p "$here/plugins"
for plugin in api-key-auth rate-limit headers; do
    cp "target/wasm32-wasip2/plugin/${plugin//-/_}.wasm" "$here/plugins/$plugin.wasm"
done

./target/release/weir demo-upstream --listen 127.0.0.1:9000 &
upstream=$!
trap 'kill $upstream 2>/dev/null || true' EXIT

echo "Weir is starting on http://127.0.0.1:8080 (Ctrl-C stops it). Try:"
echo "  curl -i http://127.0.0.1:8080/api/hello"
echo "  curl -i -H 'x-api-key: alice-key' http://127.0.0.1:8080/api/hello"
./target/release/weir run --config "$here/weir.toml"
