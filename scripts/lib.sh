# Shell helpers shared by the demo, the test runner and the benchmarks:
# build and install dasa, and run a private throwaway PostgreSQL cluster as
# the postgres user in a folder it owns (never a system-wide cluster).
# Source this file; it defines functions and sets nothing else but PGBIN.

PGBIN=/usr/lib/postgresql/15/bin

# Run a command as the postgres user when we are root (initdb refuses root).
as_pg() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

# Install missing packages, then build and install the extension.
dasa_build_install() {
  local root=$1
  bash "$root/scripts/deps.sh"
  make -C "$root" -s >/dev/null
  if [ -w "$(/usr/lib/postgresql/15/bin/pg_config --pkglibdir)" ]; then
    make -C "$root" -s install >/dev/null
  else
    echo "dasa: cannot write to PostgreSQL's library folder; run as root to install" >&2
    return 1
  fi
}

# A fresh folder the postgres user owns, for a cluster and test output.
dasa_workdir() {
  local dir
  dir=$(mktemp -d /tmp/dasa.XXXXXX)
  chmod 755 "$dir"
  [ "$(id -u)" = 0 ] && chown postgres:postgres "$dir"
  echo "$dir"
}

# Create a cluster in $1/data listening only on a unix socket in $1, port $2.
# Extra postgresql.conf lines may follow as further arguments.
dasa_cluster_init() {
  local dir=$1 port=$2; shift 2
  as_pg "$PGBIN/initdb" -D "$dir/data" -U postgres -A trust --no-sync -E UTF8 --locale=C.UTF-8 >"$dir/initdb.log"
  {
    echo "port = $port"
    echo "listen_addresses = ''"
    echo "unix_socket_directories = '$dir'"
    echo "shared_preload_libraries = 'dasa'"
    echo "max_worker_processes = 32"
    echo "log_line_prefix = '%m [%p] %b '"
    for line in "$@"; do echo "$line"; done
  } | as_pg tee -a "$dir/data/postgresql.conf" >/dev/null
}

dasa_cluster_start() {
  as_pg "$PGBIN/pg_ctl" -D "$1/data" -l "$1/server.log" -w -t 60 start >/dev/null 2>&1 || {
    echo "dasa: the server in $1 did not start; its log ends:" >&2
    tail -20 "$1/server.log" >&2
    return 1
  }
}

# Stop quickly; fall back to immediate if a fast shutdown hangs.
dasa_cluster_stop() {
  [ -f "$1/data/postmaster.pid" ] || return 0
  as_pg "$PGBIN/pg_ctl" -D "$1/data" -m fast -w -t 30 stop >/dev/null 2>&1 ||
    as_pg "$PGBIN/pg_ctl" -D "$1/data" -m immediate -w stop >/dev/null 2>&1 || true
}

# Crash the whole server like a power cut: kill -9 the postmaster and every
# child at once, and wait until all are gone (then it can start again).
dasa_cluster_crash() {
  local pm pids
  pm=$(head -1 "$1/data/postmaster.pid")
  pids="$pm $(pgrep -P "$pm" | tr '\n' ' ')"
  kill -9 $pids 2>/dev/null || true
  for _ in $(seq 1 200); do
    kill -0 $pids 2>/dev/null || return 0
    sleep 0.05
  done
  return 1
}
