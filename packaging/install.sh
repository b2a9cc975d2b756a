#!/bin/sh
# Installs pg_cache @VERSION@ into a PostgreSQL @PG_MAJOR@ server: lib/pg_cache.so into
# $(pg_config --pkglibdir), extension/* (control files, install and upgrade scripts, pg_cache_router)
# into $(pg_config --sharedir)/extension. Run it from anywhere, as a user who may write there.
#   ./install.sh [PG_CONFIG]     default: $PG_CONFIG, else the pg_config on PATH
# ./uninstall.sh with the same argument removes exactly these files (listed in MANIFEST).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
PG_CONFIG=${1:-${PG_CONFIG:-pg_config}}
command -v "$PG_CONFIG" >/dev/null 2>&1 || { echo "install.sh: no pg_config: pass its path (./install.sh /path/to/pg_config)" >&2; exit 2; }
version=$("$PG_CONFIG" --version)
case $version in
    "PostgreSQL @PG_MAJOR@."*) ;;
    *) echo "install.sh: $PG_CONFIG is $version; this package is for PostgreSQL @PG_MAJOR@" >&2; exit 1 ;;
esac
libdir=$("$PG_CONFIG" --pkglibdir)
extdir=$("$PG_CONFIG" --sharedir)/extension
for dir in "$libdir" "$extdir"; do
    [ -d "$dir" ] || { echo "install.sh: $dir (from $PG_CONFIG) does not exist" >&2; exit 1; }
    [ -w "$dir" ] || { echo "install.sh: cannot write to $dir: run as its owner or with sudo" >&2; exit 1; }
done
while read -r file; do
    case $file in
        lib/*) dest=$libdir/${file#lib/}; mode=755 ;;
        extension/*) dest=$extdir/${file#extension/}; mode=644 ;;
        *) continue ;;
    esac
    # Through a temporary name, so a running server never loads a half-written library.
    cp "$here/$file" "$dest.pg_cache-new"
    chmod "$mode" "$dest.pg_cache-new"
    mv -f "$dest.pg_cache-new" "$dest"
    echo "installed $dest"
done <"$here/MANIFEST"
echo "pg_cache @VERSION@ is installed for $version. The eviction worker needs"
echo "shared_preload_libraries = 'pg_cache' in postgresql.conf and a restart; then CREATE EXTENSION pg_cache."
