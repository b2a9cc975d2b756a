#!/bin/sh
# Removes what install.sh installed (the files in MANIFEST) from a PostgreSQL @PG_MAJOR@ server.
#   ./uninstall.sh [PG_CONFIG]   default: $PG_CONFIG, else the pg_config on PATH
# Drop the extension from every database (DROP EXTENSION pg_cache) and take pg_cache out of
# shared_preload_libraries first: a server that preloads a library it cannot find does not start.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
PG_CONFIG=${1:-${PG_CONFIG:-pg_config}}
command -v "$PG_CONFIG" >/dev/null 2>&1 || { echo "uninstall.sh: no pg_config: pass its path (./uninstall.sh /path/to/pg_config)" >&2; exit 2; }
version=$("$PG_CONFIG" --version)
case $version in
    "PostgreSQL @PG_MAJOR@."*) ;;
    *) echo "uninstall.sh: $PG_CONFIG is $version; this package is for PostgreSQL @PG_MAJOR@" >&2; exit 1 ;;
esac
libdir=$("$PG_CONFIG" --pkglibdir)
extdir=$("$PG_CONFIG" --sharedir)/extension
while read -r file; do
    case $file in
        lib/*) dest=$libdir/${file#lib/} ;;
        extension/*) dest=$extdir/${file#extension/} ;;
        *) continue ;;
    esac
    if [ -e "$dest" ]; then rm -f "$dest" && echo "removed $dest"; fi
done <"$here/MANIFEST"
echo "pg_cache @VERSION@ is uninstalled from $version."
