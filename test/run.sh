#!/usr/bin/env bash
# make test: install what is missing, build and install dasa, start a private
# cluster, and run the whole suite under pg_prove (pg_regress, pgTAP suites,
# and the scripts that need several sessions, restarts or crashes).
# Exits non-zero on any failure; the cluster is stopped in every case.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
. "$root/scripts/lib.sh"

dasa_build_install "$root"

work=$(dasa_workdir)
port=55432
# Copy the suite where the postgres user can read it (a root-owned clone may not be),
# with the sources and objects (the layering test inspects them).
mkdir -p "$work/suite"
cp -r "$root/test" "$root/expected" "$root/scripts" "$root/src" "$root/README.md" "$work/suite/"
[ -d "$root/examples" ] && cp -r "$root/examples" "$work/suite/"
rm -rf "$work/suite/test/resonate/node_modules"	# (a developer's; the test installs its own)
[ "$(id -u)" = 0 ] && chown -R postgres:postgres "$work"

dasa_cluster_init "$work" "$port" \
  "dasa.launcher_naptime = 1s" \
  "log_min_messages = info"
trap 'dasa_cluster_stop "$work"' EXIT
dasa_cluster_start "$work"

status=0
as_pg env DASA_WORK="$work" DASA_PGDATA="$work/data" PGHOST="$work" PGPORT="$port" PGUSER=postgres \
  bash "$work/suite/test/suite.sh" || status=$?
if [ "$status" != 0 ]; then
  echo "dasa: test output kept in $work (server log: $work/server.log)"
else
  dasa_cluster_stop "$work"
  rm -rf "$work"
fi
exit "$status"
