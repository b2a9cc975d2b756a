# The pg_cache files installed in a PostgreSQL's directories (sourced by tests/package.sh and
# tests/nonroot.sh): the tests that install the packages, or `make run` as another user, replace
# the files `make install` put there and put them back exactly as they were afterwards (content,
# mode, owner, timestamps), so that the suites after them test the build.
#
#   installed_files PG_CONFIG          the paths, one a line: pg_cache* in pkglibdir and extension/
#   backup_installed PG_CONFIG FILE    saves them into the tar FILE (and FILE.sums: their checksums)
#   remove_installed PG_CONFIG         deletes them
#   restore_installed PG_CONFIG FILE   removes what is there now and unpacks FILE (idempotent)
#   restored_as_before PG_CONFIG FILE  the files now are those of FILE.sums (content and metadata)

installed_files() {
    local libdir extdir
    libdir=$("$1" --pkglibdir) extdir=$("$1" --sharedir)/extension
    find "$libdir" "$extdir" -maxdepth 1 \( -name 'pg_cache.*' -o -name 'pg_cache--*' -o -name 'pg_cache_router*' \) \
        \( -type f -o -type l \) | LC_ALL=C sort
}

# content, mode, owner and modification time of each file.
installed_sums() {
    local file
    installed_files "$1" | while read -r file; do
        printf '%s %s\n' "$(sha256sum <"$file" | cut -c1-64)" "$(stat -c '%a %U:%G %Y %n' "$file")"
    done
}

backup_installed() {
    local files
    files=$(installed_files "$1")
    [ -n "$files" ] || { echo "backup_installed: no pg_cache files installed for $1 (make install first)" >&2; return 1; }
    sed 's|^/||' <<<"$files" | tar -C / -cpf "$2.tmp" -T - && mv "$2.tmp" "$2"
    installed_sums "$1" >"$2.sums"
}

remove_installed() {
    local file
    installed_files "$1" | while read -r file; do rm -f "$file"; done
}

restore_installed() {
    [ -f "$2" ] || return 0
    remove_installed "$1"
    tar -C / -xpf "$2"
}

restored_as_before() {
    diff <(installed_sums "$1") "$2.sums"
}
