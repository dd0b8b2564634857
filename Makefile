# The two commands in the README:
#   make quickstart   run the gateway in front of a demo upstream
#   make test         run every test
# Both install what they need first (the wasm32-wasip2 Rust target).

.PHONY: quickstart test setup

setup:
	@rustup target list --installed | grep -qx wasm32-wasip2 || rustup target add wasm32-wasip2

quickstart: setup
	./examples/quickstart/run.sh

test: setup
	cargo test --workspace
