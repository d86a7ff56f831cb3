# Minimal TAP for the suite's shell scripts, plus psql helpers.
# Source it; call done_testing at the end (the plan goes last, as TAP allows).

. "$DASA_SUITE/../scripts/lib.sh"

tap_count=0
tap_failed=0

_tap_result() {
  tap_count=$((tap_count + 1))
  if [ "$1" = 0 ]; then
    echo "ok $tap_count - $2"
  else
    echo "not ok $tap_count - $2"
    tap_failed=$((tap_failed + 1))
  fi
}

# ok DESCRIPTION COMMAND...: passes when the command succeeds.
ok() {
  local desc=$1; shift
  if "$@" >/dev/null 2>&1; then _tap_result 0 "$desc"; else _tap_result 1 "$desc"; fi
}

# is GOT EXPECTED DESCRIPTION
is() {
  if [ "$1" = "$2" ]; then
    _tap_result 0 "$3"
  else
    _tap_result 1 "$3"
    printf '#   got:      %s\n#   expected: %s\n' "$1" "$2" >&2
  fi
}

diag() { echo "# $*" >&2; }

done_testing() {
  echo "1..$tap_count"
  [ "$tap_failed" = 0 ]
}

# q DB SQL: run SQL, print unaligned tuples only; fails on error.
q() {
  psql -XAtq -v ON_ERROR_STOP=1 -d "$1" -c "$2"
}

# fresh_database DB: DB dropped if there, created again, with dasa installed.
fresh_database() {
  PGOPTIONS='-c client_min_messages=warning' q postgres "DROP DATABASE IF EXISTS $1" >/dev/null
  q postgres "CREATE DATABASE $1" >/dev/null
  q "$1" "CREATE EXTENSION dasa" >/dev/null
}

# sqlstate_of DB SQL: the SQLSTATE SQL fails with (or its output).
sqlstate_of() {
  psql -XAtq -v VERBOSITY=sqlstate -d "$1" -c "$2" 2>&1 | sed 's/^ERROR:  //'
}

# wait_for SECONDS DB SQL: poll every 50 ms until SQL returns 't'; bounded.
wait_for() {
  local deadline=$((SECONDS + $1)) db=$2 sql=$3
  while [ $SECONDS -lt $deadline ]; do
    [ "$(psql -XAtq -d "$db" -c "$sql" 2>/dev/null)" = t ] && return 0
    sleep 0.05
  done
  return 1
}

# wait_ready SECONDS: until the server accepts connections again (after a crash).
wait_ready() {
  local deadline=$((SECONDS + $1))
  while [ $SECONDS -lt $deadline ]; do
    psql -XAtq -d postgres -c 'SELECT 1' >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  return 1
}

# For scripts that run private clusters of their own (scripts/lib.sh makes them):
# qat DIR PORT DB SQL: q against the cluster whose socket is in DIR.
qat() {
  psql -XAtq -h "$1" -p "$2" -v ON_ERROR_STOP=1 -d "$3" -c "$4"
}

# wait_at SECONDS DIR PORT DB SQL: wait_for against that cluster.
wait_at() {
  local deadline=$((SECONDS + $1))
  while [ $SECONDS -lt $deadline ]; do
    [ "$(psql -XAtq -h "$2" -p "$3" -d "$4" -c "$5" 2>/dev/null)" = t ] && return 0
    sleep 0.1
  done
  return 1
}
