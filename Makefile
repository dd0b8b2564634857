# The two commands in the README:
#   make quickstart   run the gateway in front of a demo upstream
#   make test         run every test
# Both install what they need first (scripts/setup.sh: the wasm32-wasip2
# Rust target, and the tools for plugins in JavaScript, Python and C).

.PHONY: quickstart test setup

setup:
	@scripts/setup.sh

quickstart: setup
	./examples/quickstart/run.sh

test: setup
	scripts/check-layers.py
	scripts/check-sizes.py
	cargo test --workspace
	scripts/check-deploy.sh
	scripts/fuzz.sh
