#!/usr/bin/env bash
# Validates META.json (or the file given) against the PGXN metadata spec with the pgxn_meta crate:
# builds packaging/validate-meta (its own workspace and Cargo.lock, into its own target
# directory, packaging/validate-meta/target) the first time, then runs it.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
meta=$(realpath "${1:-META.json}")
cargo run --quiet --release --locked --manifest-path packaging/validate-meta/Cargo.toml \
    --target-dir packaging/validate-meta/target -- "$meta"
