#!/usr/bin/env bash
# The binary packages as a DBA uses them (`make package` first; as root). For PG=15 (the default)
# the Debian package, for PG=18 the tarball (packaging/build.sh):
#   - the build's pg_cache files (what `make install` put into the server's pkglibdir and
#     extension directory) are saved and removed;
#   - dpkg -i the .deb (PG 18: the tarball's install.sh with that server's pg_config);
#   - a cluster with shared_preload_libraries = 'pg_cache': CREATE EXTENSION, set and get, an
#     entry with a 1 s ttl evicted by the worker, CREATE EXTENSION … VERSION '0.1.0' and
#     ALTER EXTENSION UPDATE in another database (and from 0.2.0), pg_cache_router;
#   - the cluster stops, dpkg -r (uninstall.sh), and nothing of pg_cache is left;
#   - the build's files are put back exactly as they were (also when the script fails or is
#     interrupted), so the suites after this one test the build.
# Also: the version numbers in Cargo.toml, pg_cache.control, META.json, CHANGELOG.md and the
# package agree, and META.json validates (packaging/validate-meta.sh).
set -uo pipefail
cd "$(dirname "$0")/.."

PG=${PG:-15}
case $PG in
    15) export PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config} ;;
    18) export PG_CONFIG=${PG_CONFIG:-/opt/pg_cache/pg18/bin/pg_config} ;;
    *) echo "package: PG=$PG is not supported (15 or 18)" >&2; exit 2 ;;
esac
source tests/lib.sh
source packaging/installed.sh
[ "$(id -u)" = 0 ] || { echo "package: run as root (it installs and removes packages)" >&2; exit 2; }

VERSION=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -1)
ARCH=$(dpkg --print-architecture)
OUT=${PACKAGE_OUT:-packaging/out}
DATADIR=$PG_CACHE_DATA_ROOT/package
BACKUP=$PG_CACHE_DATA_ROOT/package-build-files.tar
export PGPORT=$((5445 + PG_CACHE_PORT_OFFSET))
LIBDIR=$("$PG_CONFIG" --pkglibdir)
EXTDIR=$("$PG_CONFIG" --sharedir)/extension
DEB_NAME=postgresql-15-pg-cache
if [ "$PG" = 15 ]; then
    PACKAGE=$OUT/${DEB_NAME}_${VERSION}_${ARCH}.deb
else
    PACKAGE=$OUT/pg_cache-$VERSION-pg$PG-linux-$ARCH.tar.gz
fi
mkdir -p "$PG_CACHE_DATA_ROOT"

# --- Version numbers.
meta_version=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["version"])' META.json)
changelog_top=$(grep -m1 '^## ' CHANGELOG.md)
source_control=$(sed -n "s/^default_version = '\(.*\)'$/\1/p" pg_cache.control)
check "Cargo.toml's version ($VERSION) is a version" grep -Eq '^[0-9]+\.[0-9]+\.[0-9]+$' <<<"$VERSION"
check "pg_cache.control's default_version ($source_control) is Cargo.toml's" \
    test "$source_control" = '@CARGO_VERSION@' -o "$source_control" = "$VERSION"
check "META.json's version ($meta_version) is Cargo.toml's ($VERSION)" test "$meta_version" = "$VERSION"
check "CHANGELOG.md's top section ($changelog_top) is $VERSION" grep -Eq "^## $VERSION( |\$)" <<<"$changelog_top"
check "the package is named for $VERSION: $PACKAGE" test -s "$PACKAGE"
if [ ! -s "$PACKAGE" ]; then
    echo "no package at $PACKAGE: make package PG=$PG first"
    summary package
    exit 1
fi
if [ "$PG" = 15 ]; then
    check "the .deb's Version is $VERSION" test "$(dpkg-deb -f "$PACKAGE" Version)" = "$VERSION"
    packaged_control=$(dpkg-deb --fsys-tarfile "$PACKAGE" | tar -xOf - ".$EXTDIR/pg_cache.control")
else
    packaged_control=$(tar -xzOf "$PACKAGE" "pg_cache-$VERSION-pg$PG-linux-$ARCH/extension/pg_cache.control")
fi
check "the packaged pg_cache.control has default_version '$VERSION'" \
    grep -qx "default_version = '$VERSION'" <<<"$packaged_control"
check "META.json validates (pgxn_meta)" bash packaging/validate-meta.sh

# --- The build's files: saved, removed, put back at the end whatever happens.
# A run that was killed before putting them back left its backup: restore it first.
if [ -f "$BACKUP" ] && [ -z "$(installed_files "$PG_CONFIG")" ]; then
    echo "package: restoring the build's files a previous run left in $BACKUP"
    restore_installed "$PG_CONFIG" "$BACKUP"
fi
if [ "$PG" = 15 ] && dpkg-query -W -f='${Status}' "$DEB_NAME" 2>/dev/null | grep -q 'ok installed'; then
    echo "package: $DEB_NAME is installed already: dpkg -r it first (this test installs and removes it)" >&2
    summary package
    exit 1
fi
if ! backup_installed "$PG_CONFIG" "$BACKUP"; then
    fail "the build's pg_cache files are installed (make install)"
    summary package
    exit 1
fi
tarball_dir=$(mktemp -d)
PUT_BACK=
put_back() {
    tests/cluster.sh destroy "$DATADIR" 2>/dev/null
    if [ "$PG" = 15 ] && dpkg-query -W -f='${Status}' "$DEB_NAME" 2>/dev/null | grep -q 'ok installed'; then
        dpkg -r "$DEB_NAME" >/dev/null
    fi
    if [ -f "$BACKUP" ]; then
        restore_installed "$PG_CONFIG" "$BACKUP"
        if restored_as_before "$PG_CONFIG" "$BACKUP"; then
            rm -f "$BACKUP" "$BACKUP.sums"
            PUT_BACK=yes
        else
            echo "package: the build's files differ from before; the backup stays in $BACKUP" >&2
        fi
    fi
    rm -rf "$tarball_dir"
}
at_exit put_back
trap 'exit 130' INT TERM HUP
echo "package: the build's files, saved in $BACKUP:"
sed 's/^/  /' <(installed_files "$PG_CONFIG")
remove_installed "$PG_CONFIG"
check "the build's pg_cache files are removed" test -z "$(installed_files "$PG_CONFIG")"

# --- Install.
if [ "$PG" = 15 ]; then
    check "dpkg -i $(basename "$PACKAGE")" dpkg -i "$PACKAGE"
    check "dpkg says $DEB_NAME $VERSION is installed" \
        test "$(dpkg-query -W -f='${Status} ${Version}' "$DEB_NAME")" = "install ok installed $VERSION"
    package_files=$(dpkg -L "$DEB_NAME" | while read -r path; do [ -d "$path" ] || echo "$path"; done)
    check "the README in /usr/share/doc says the worker needs shared_preload_libraries" \
        grep -q "shared_preload_libraries = 'pg_cache'" "/usr/share/doc/$DEB_NAME/README.Debian"
    check "the package has a copyright file" test -s "/usr/share/doc/$DEB_NAME/copyright"
else
    tar -xzf "$PACKAGE" -C "$tarball_dir"
    unpacked=$tarball_dir/pg_cache-$VERSION-pg$PG-linux-$ARCH
    if [ -x /usr/lib/postgresql/15/bin/pg_config ]; then
        check "install.sh refuses another version's pg_config" \
            bash -c "! '$unpacked/install.sh' /usr/lib/postgresql/15/bin/pg_config"
    fi
    check "install.sh $PG_CONFIG" "$unpacked/install.sh" "$PG_CONFIG"
    package_files=$(sed -e "s|^lib/|$LIBDIR/|" -e "s|^extension/|$EXTDIR/|" "$unpacked/MANIFEST")
fi
check "the package installs the library into $LIBDIR" test -f "$LIBDIR/pg_cache.so"
for script in "pg_cache--$VERSION.sql" sql/pg_cache--*.sql router/*; do
    script=$(basename "$script")
    check "the package installs extension/$script" test -s "$EXTDIR/$script"
done
check "every installed file is one of the package's" \
    test "$(installed_files "$PG_CONFIG")" = "$(grep -E '/(pg_cache\.so|pg_cache\.control|pg_cache--.*|pg_cache_router.*)$' <<<"$package_files" | LC_ALL=C sort)"

# --- Use.
start_cluster "$DATADIR" "$PGPORT" "log_min_messages = debug1"
check "the server preloads pg_cache" test "$(q postgres "SHOW shared_preload_libraries")" = pg_cache
q postgres "CREATE DATABASE cache" && q postgres "CREATE DATABASE old" && q postgres "CREATE DATABASE old2"
check "CREATE EXTENSION pg_cache installs $VERSION" \
    test "$(q cache "CREATE EXTENSION pg_cache; SELECT extversion FROM pg_extension WHERE extname = 'pg_cache'" | tail -1)" = "$VERSION"
check "set and get" \
    test "$(q cache "SELECT cache_set('greeting', 'hello'); SELECT convert_from(cache_get('greeting'), 'UTF8')" | tail -1)" = hello
q cache "SELECT cache_set('short-lived', 'v', ttl => '1 s')" >/dev/null
check "an entry with a 1 s ttl is evicted by the worker" \
    wait_for 15 cache "SELECT count(*) = 0 FROM pg_cache_entries WHERE key = 'short-lived'"
check "the eviction worker of the database ran (server log)" \
    grep -q 'starting background worker process "pg_cache evictor for database cache"' "$DATADIR/server.log"
check "the other entry is still there" test "$(q cache "SELECT convert_from(cache_get('greeting'), 'UTF8')")" = hello
check "the package offers 0.1.0, 0.2.0 and $VERSION" \
    test "$(q postgres "SELECT string_agg(version, ',' ORDER BY version) FROM pg_available_extension_versions WHERE name = 'pg_cache'")" = "0.1.0,0.2.0,$VERSION"
for from in 0.1.0 0.2.0; do
    db=old; [ "$from" = 0.2.0 ] && db=old2
    check "CREATE EXTENSION pg_cache VERSION '$from'" \
        test "$(q "$db" "CREATE EXTENSION pg_cache VERSION '$from'; SELECT extversion FROM pg_extension WHERE extname = 'pg_cache'" | tail -1)" = "$from"
    q "$db" "SELECT cache_set('kept', 'from $from')" >/dev/null
    check "ALTER EXTENSION pg_cache UPDATE from $from reaches $VERSION and keeps the entries" \
        test "$(q "$db" "ALTER EXTENSION pg_cache UPDATE; SELECT extversion || ' ' || convert_from(cache_get('kept'), 'UTF8') FROM pg_extension WHERE extname = 'pg_cache'" | tail -1)" = "$VERSION from $from"
done
check "the updated extension's new functions work" \
    test "$(q old "SELECT cache_set('t', 'v', tags => '{a}')::text = '' AND cache_remove_by_tag('{a}') = 1")" = t
check "pg_cache_router is available" \
    test "$(q postgres "SELECT count(*) FROM pg_available_extensions WHERE name = 'pg_cache_router'")" = 1
if [ -f "$EXTDIR/plproxy.control" ]; then
    q postgres "CREATE DATABASE router"
    check "CREATE EXTENSION pg_cache_router (with PL/Proxy)" q router "CREATE EXTENSION pg_cache_router CASCADE"
fi
check "no crash in the server log" no_crash_in_log "$DATADIR"
tests/cluster.sh destroy "$DATADIR"

# --- Remove.
if [ "$PG" = 15 ]; then
    check "dpkg -r $DEB_NAME" dpkg -r "$DEB_NAME"
    check "dpkg no longer lists $DEB_NAME as installed" \
        bash -c "! dpkg-query -W -f='\${Status}' '$DEB_NAME' 2>/dev/null | grep -q 'ok installed'"
    check "its doc directory is gone" test ! -e "/usr/share/doc/$DEB_NAME"
else
    check "uninstall.sh $PG_CONFIG" "$unpacked/uninstall.sh" "$PG_CONFIG"
fi
left=$(while read -r path; do [ -e "$path" ] && echo "$path"; done <<<"$package_files")
check "none of the package's files is left${left:+ (left: $left)}" test -z "$left"
check "nothing of pg_cache is left in $LIBDIR and $EXTDIR" test -z "$(installed_files "$PG_CONFIG")"

# --- The build's files back, exactly.
put_back
check "the build's files are back as they were (content, mode, owner, mtime)" test "$PUT_BACK" = yes
summary package
