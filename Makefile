# Shortcuts; scripts/test is the one command CI runs.
.PHONY: check test run

# Fast inner loop: formatting, lints, Rust tests.
check:
	cargo fmt --all -- --check
	cargo clippy --release --all-targets -- -D warnings
	cargo test --release

# Everything, including the real-client compatibility suite.
test:
	scripts/test

run:
	cargo run --release
