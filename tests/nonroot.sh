#!/usr/bin/env bash
# `make run` as a user who is not root but has sudo, as the README describes it, on the tree that
# is already built (as root; run as root). For the test:
#   - a user cachedev with passwordless sudo (removed afterwards);
#   - a copy of the tree, its release build included (target/release: same sources, same
#     profile, so cargo has nothing to compile), owned by that user, in /tmp/pg_cache_nonroot;
#   - the toolchain root's rustup and cargo installed: the user may traverse /root and use
#     /root/.cargo (an ACL for that user only, removed afterwards), so the registry's sources are
#     at the paths the build recorded;
#   - `make run` (cargo pgrx install --sudo, `sudo install` of the frozen scripts, a cluster that
#     runs as that user, port 5444, data in /tmp/pg_cache_nonroot/run), `make psql`, `make stop`.
# The build's installed files are saved first and put back exactly as they were afterwards
# (packaging/installed.sh): `make run` reinstalls them.
# Environment: CARGO_TARGET_DIR, where the built tree's target directory is (default: target/).
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

PG=15
export PG_CONFIG=/usr/lib/postgresql/15/bin/pg_config
source tests/lib.sh
source packaging/installed.sh
[ "$(id -u)" = 0 ] || { echo "nonroot: run as root (it creates the user)" >&2; exit 2; }

# Not pg_…: initdb (cargo pgrx init) refuses a superuser role named like that.
USER_NAME=cachedev
WORK=/tmp/pg_cache_nonroot
TREE=$WORK/tree
RUN_DATA=$WORK/run
RUN_PORT=5444
SOURCE_TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
BACKUP=$WORK.build-files.tar
SUDOERS=/etc/sudoers.d/$USER_NAME
CARGO_DIR=${CARGO_HOME:-$HOME/.cargo}
RUSTUP_DIR=${RUSTUP_HOME:-$HOME/.rustup}

as_user() {
    runuser -u "$USER_NAME" -- env -i HOME="/home/$USER_NAME" USER="$USER_NAME" LOGNAME="$USER_NAME" \
        PATH="$CARGO_DIR/bin:/usr/local/bin:/usr/bin:/bin" CARGO_HOME="$CARGO_DIR" RUSTUP_HOME="$RUSTUP_DIR" \
        LANG=C.UTF-8 "$@"
}
user_make() { as_user make -C "$TREE" --no-print-directory "$@" RUN_PORT=$RUN_PORT RUN_DATA=$RUN_DATA; }

cleanup() {
    if id "$USER_NAME" >/dev/null 2>&1; then
        [ -d "$TREE" ] && user_make stop >/dev/null 2>&1
        if command -v setfacl >/dev/null; then
            setfacl -x "u:$USER_NAME" "$HOME" 2>/dev/null
            setfacl -R -x "u:$USER_NAME" "$CARGO_DIR" 2>/dev/null
        fi
        userdel -r "$USER_NAME" 2>/dev/null
    fi
    rm -f "$SUDOERS"
    # What cargo created in CARGO_HOME as that user (locks, index caches) belongs to root again.
    find "$CARGO_DIR" -nouser -exec chown root:root {} + 2>/dev/null
    if [ -f "$BACKUP" ]; then
        restore_installed "$PG_CONFIG" "$BACKUP"
        if restored_as_before "$PG_CONFIG" "$BACKUP"; then
            rm -f "$BACKUP" "$BACKUP.sums"
        else
            echo "nonroot: the build's files differ from before; the backup stays in $BACKUP" >&2
        fi
    fi
    rm -rf "$WORK"
}

[ -f "$SOURCE_TARGET/release/libpg_cache.so" ] \
    || { echo "nonroot: no release build in $SOURCE_TARGET (make install first)"; fail "the tree is built"; summary nonroot; exit 1; }
# Leftovers of an interrupted run.
if [ -f "$BACKUP" ] && [ -z "$(installed_files "$PG_CONFIG")" ]; then restore_installed "$PG_CONFIG" "$BACKUP"; fi
cleanup
backup_installed "$PG_CONFIG" "$BACKUP" || { fail "the build's pg_cache files are installed (make install)"; summary nonroot; exit 1; }
at_exit cleanup
trap 'exit 130' INT TERM HUP

# The user and its sudo.
useradd -m -s /bin/bash "$USER_NAME"
echo "$USER_NAME ALL=(ALL) NOPASSWD: ALL" >"$SUDOERS.tmp" && chmod 440 "$SUDOERS.tmp" && visudo -cqf "$SUDOERS.tmp" \
    && mv "$SUDOERS.tmp" "$SUDOERS"
check "the user $USER_NAME is not root and has passwordless sudo" \
    test "$(as_user id -u)" != 0 -a "$(as_user sudo -n id -u)" = 0

# The toolchain: traverse /root, write CARGO_HOME's locks and caches (that user only).
if ! command -v setfacl >/dev/null; then
    apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends acl >/dev/null \
        || { apt-get -o DPkg::Lock::Timeout=600 update -q >/dev/null && apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends acl >/dev/null; }
fi
setfacl -m "u:$USER_NAME:x" "$HOME"
setfacl -R -m "u:$USER_NAME:rwX" "$CARGO_DIR"
check "the user finds cargo and cargo-pgrx" as_user cargo pgrx --version

# The built tree, as that user's: the sources git knows (tracked and untracked, not ignored) and
# the release build.
mkdir -p "$TREE/target"
git ls-files -z --cached --others --exclude-standard | tar --null -T - -cf - | tar -C "$TREE" -xf -
cp -a "$SOURCE_TARGET/release" "$TREE/target/"
chown -R "$USER_NAME:" "$WORK"

out=$WORK/make-run.log
started=$SECONDS
user_make run >"$out" 2>&1
status=$?
sed 's/^/  | /' "$out" | tail -25
check "make run as $USER_NAME succeeds" test "$status" = 0
check "make run compiled nothing (the tree was built; it took $((SECONDS - started)) s)" bash -c "! grep -q '^ *Compiling ' '$out'"
check "make run installed through sudo" grep -q "^sudo install -m 755 .*/pg_cache.so" "$out"
export PGPORT=$RUN_PORT
check "the cluster runs as $USER_NAME" \
    test "$(stat -c %U "$RUN_DATA/postmaster.pid" 2>/dev/null)" = "$USER_NAME"
check "the cluster preloads pg_cache" test "$(q pg_cache "SHOW shared_preload_libraries")" = pg_cache
psql_out=$(echo "SELECT cache_set('nonroot', 'works'); SELECT convert_from(cache_get('nonroot'), 'UTF8');" | user_make -s psql 2>&1)
check "make psql as $USER_NAME reaches the cache" grep -q works <<<"$psql_out"
user_make run >"$out" 2>&1
grep -q "pg_cache is running" "$out" || sed 's/^/  | /' "$out" | tail -15
check "make run again is harmless" grep -q "pg_cache is running" "$out"
user_make stop
check "make stop stops the cluster" bash -c "! '$PGBIN/pg_ctl' -D '$RUN_DATA' status >/dev/null 2>&1"
check "the installed files are readable by everyone" \
    bash -c "installed=\$(source packaging/installed.sh; installed_files '$PG_CONFIG'); [ -n \"\$installed\" ] && ! find \$installed ! -perm -o=r | grep -q ."
summary nonroot
