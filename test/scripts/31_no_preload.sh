#!/usr/bin/env bash
# Loading dasa without shared_preload_libraries fails with a clear hint:
# a second, throwaway cluster without the setting tries CREATE EXTENSION.
set -uo pipefail
. "$DASA_SUITE/lib/tap.sh"
dir=$DASA_WORK/nopreload
port=55499
bin=/usr/lib/postgresql/15/bin
rm -rf "$dir"; mkdir -p "$dir"

"$bin/initdb" -D "$dir/data" -U postgres -A trust --no-sync >/dev/null
printf "port = %s\nlisten_addresses = ''\nunix_socket_directories = '%s'\n" "$port" "$dir" >>"$dir/data/postgresql.conf"
"$bin/pg_ctl" -D "$dir/data" -l "$dir/log" -w start >/dev/null
out=$(psql -XAtq -h "$dir" -p $port -d postgres -v VERBOSITY=verbose -c 'CREATE EXTENSION dasa' 2>&1)
"$bin/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null

case "$out" in *"dasa must be loaded via shared_preload_libraries"*) r=0 ;; *) r=1 ;; esac
is "$r" 0 "CREATE EXTENSION without preloading fails: $(echo "$out" | head -1)"
case "$out" in *"55000"*) r=0 ;; *) r=1 ;; esac
is "$r" 0 "with SQLSTATE 55000 (object not in prerequisite state)"
case "$out" in *"HINT:  Add dasa to shared_preload_libraries"*) r=0 ;; *) r=1 ;; esac
is "$r" 0 "and a hint saying how to fix it"
rm -rf "$dir"
done_testing
