#!/usr/bin/env bash
# Installs what building and testing pg_cache needs on Debian 12, skipping what is already there:
# PostgreSQL 15 with its dev package, libclang, sudo (for `cargo pgrx test --runas`), pgbench
# (postgresql-contrib), and cargo-pgrx at exactly the pgrx version in Cargo.toml.
set -euo pipefail
PGRX_VERSION=0.18.1
PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
export DEBIAN_FRONTEND=noninteractive PATH="$HOME/.cargo/bin:$PATH"

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
apt_install() { as_root apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends "$@"; }

if ! dpkg -s postgresql-15 postgresql-server-dev-15 libclang-dev sudo >/dev/null 2>&1; then
    as_root apt-get -o DPkg::Lock::Timeout=600 update -q
    dpkg -s postgresql-15 >/dev/null 2>&1 || apt_install postgresql-15
    # The dev package at the installed server's version, so apt does not upgrade the server;
    # when the mirror no longer has that version, move both together.
    version=$(dpkg-query -W -f='${Version}' postgresql-15)
    apt_install "postgresql-server-dev-15=$version" libclang-dev sudo \
        || apt_install postgresql-15 postgresql-server-dev-15 libclang-dev sudo
fi

if [ "$(cargo pgrx --version 2>/dev/null)" != "cargo-pgrx $PGRX_VERSION" ]; then
    cargo install cargo-pgrx --version "$PGRX_VERSION" --locked
fi

# Points pgrx at Debian's PostgreSQL; downloads nothing.
if ! grep -qs "pg15 = \"$PG_CONFIG\"" "${PGRX_HOME:-$HOME/.pgrx}/config.toml"; then
    cargo pgrx init --pg15 "$PG_CONFIG"
fi
