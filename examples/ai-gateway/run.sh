#!/usr/bin/env bash
# Build the gateway, the provider emulator and the plugins, then run the AI
# gateway example: the emulator on 127.0.0.1:9100 standing in for the
# providers, and Weir on 127.0.0.1:8080.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cd "$root"

rustup target add wasm32-wasip2 >/dev/null 2>&1 || rustup target add wasm32-wasip2
cargo build --release -p weir -p weir-emulator
plugins=(api-key-auth prompt-template ai-anthropic ai-gemini ai-ollama)
cargo build --profile plugin --target wasm32-wasip2 "${plugins[@]/#/-p}"

mkdir -p "$here/plugins"
for plugin in "${plugins[@]}"; do
    cp "target/wasm32-wasip2/plugin/${plugin//-/_}.wasm" "$here/plugins/$plugin.wasm"
done

./target/release/weir-emulator --listen 127.0.0.1:9100 &
emulator=$!
trap 'kill $emulator 2>/dev/null || true' EXIT

echo "Weir is starting on http://127.0.0.1:8080 (Ctrl-C stops it). Try:"
echo "  curl -s http://127.0.0.1:8080/v1/chat/completions -H 'authorization: Bearer alice-key' \\"
echo "       -d '{\"model\": \"smart\", \"messages\": [{\"role\": \"user\", \"content\": \"Hello\"}]}'"
./target/release/weir run --config "$here/weir.toml"
