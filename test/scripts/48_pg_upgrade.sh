#!/usr/bin/env bash
# Major upgrades: pg_upgrade --check passes on a cluster with dasa,
# registrations and unfinished invocations (no reg* column in dasa's
# tables), and a full pg_upgrade (15 -> 15 runs the same steps) carries the
# work over: after it, every invocation finishes in the new cluster, each
# effect exactly once, with no client asking.
set -uo pipefail
. "$DASA_SUITE/lib/tap.sh"
dir=$DASA_WORK/upgrade
bin=/usr/lib/postgresql/15/bin
old_port=55631
new_port=55632
n=200
rm -rf "$dir"; mkdir -p "$dir"
cd "$dir" || exit 1

init() {
  "$bin/initdb" -D "$dir/$1" -U postgres -A trust --no-sync >/dev/null
  printf "port = %s\nlisten_addresses = ''\nunix_socket_directories = '%s'\nshared_preload_libraries = 'dasa'\ndasa.launcher_naptime = 1s\n" \
    "$2" "$dir" >>"$dir/$1/postgresql.conf"
}
stop_all() {
  for c in old new; do
    [ -f "$dir/$c/postmaster.pid" ] && "$bin/pg_ctl" -D "$dir/$c" -m immediate -w stop >/dev/null 2>&1
  done
}
trap stop_all EXIT
p() { qat "$dir" "$1" "$2" "$3"; }
pwait() { wait_at "$1" "$dir" "$2" "$3" "$4"; }

init old $old_port
"$bin/pg_ctl" -D "$dir/old" -l "$dir/old.log" -w start >/dev/null
p $old_port postgres "CREATE DATABASE app" >/dev/null
p $old_port app "CREATE EXTENSION dasa" >/dev/null
p $old_port app "
CREATE TABLE effects (inv text PRIMARY KEY);
CREATE FUNCTION up_work(args jsonb) RETURNS jsonb LANGUAGE plpgsql AS \$\$
BEGIN
  INSERT INTO effects VALUES (dasa.current_invocation());
  PERFORM pg_sleep(0.02);
  RETURN args;
END \$\$;
SELECT count(dasa.register('up_work', 'up_work(jsonb)', max_attempts => 10, initial_backoff => '10 ms'));
SELECT count(dasa.invoke('up_work', jsonb_build_object('i', i), 'up-' || i)) FROM generate_series(1, $n) i;
SELECT dasa.create_promise('up-human', '1 hour')" >/dev/null

init new $new_port
ok "pg_upgrade --check passes against the running cluster with dasa" \
   "$bin/pg_upgrade" --check -b "$bin" -B "$bin" -d "$dir/old" -D "$dir/new" -p $old_port -P $new_port -s "$dir"
"$bin/pg_ctl" -D "$dir/old" -m fast -w stop >/dev/null
"$bin/pg_ctl" -D "$dir/old" -l "$dir/old.log" -w -o "-c dasa.executors_per_database=0" start >/dev/null
unfinished=$(p $old_port app "SELECT count(*) FROM dasa.tasks WHERE state <> 'completed'")
"$bin/pg_ctl" -D "$dir/old" -m fast -w stop >/dev/null
diag "$unfinished of $n invocations unfinished when the old cluster stopped"
ok "some invocations are unfinished at the upgrade" test "$unfinished" -gt 0

"$bin/pg_upgrade" -b "$bin" -B "$bin" -d "$dir/old" -D "$dir/new" -p $old_port -P $new_port -s "$dir" >"$dir/upgrade.out" 2>&1
is "$?" 0 "a full pg_upgrade succeeds"
"$bin/pg_ctl" -D "$dir/new" -l "$dir/new.log" -w start >/dev/null
ok "every invocation finishes in the new cluster, no client asking" pwait 60 $new_port app \
   "SELECT count(*) = $n FROM dasa.promises WHERE id LIKE 'up-%' AND id <> 'up-human' AND state = 'resolved'"
is "$(p $new_port app "SELECT count(*) FROM effects")" $n "each invocation's effect exactly once"
is "$(p $new_port app "SELECT proc FROM dasa.functions")" "public.up_work(jsonb)" "the registration survived"
p $new_port app "SELECT dasa.resolve('up-human', '1')" >/dev/null
is "$(p $new_port app "SELECT state FROM dasa.promises WHERE id = 'up-human'")" resolved \
   "a pending promise from before the upgrade can be resolved"
is "$(p $new_port app "SELECT count(*) FROM dasa.origin o, pg_control_system() c
                       WHERE o.system_identifier = c.system_identifier AND NOT o.paused")" 1 \
   "dasa.origin names the new cluster"
stop_all
trap - EXIT
cd / && rm -rf "$dir"
done_testing
