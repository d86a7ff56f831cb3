#!/usr/bin/env bash
# Runs the pg_regress suite (test/regress/*.sql against expected/*.out) and
# reports each test as a TAP line; diffs go to the diagnostics on failure.
set -uo pipefail
. "$DASA_SUITE/lib/tap.sh"

regress=$DASA_WORK/regress
mkdir -p "$regress/sql" "$regress/expected" "$regress/out"
cp "$DASA_SUITE"/regress/*.sql "$regress/sql/"
cp "$DASA_SUITE"/../expected/*.out "$regress/expected/"
tests=$(cd "$regress/sql" && ls *.sql | sed 's/\.sql$//' | sort)

output=$(/usr/lib/postgresql/15/lib/pgxs/src/test/regress/pg_regress \
  --host="$PGHOST" --port="$PGPORT" --user="$PGUSER" \
  --inputdir="$regress" --outputdir="$regress/out" \
  --dbname=dasa_regress --load-extension=dasa $tests 2>&1)

for t in $tests; do
  line=$(echo "$output" | grep -E "^(test| ) *$t +\.\.\. " | head -1)
  case "$line" in
    *"... ok"*) _tap_result 0 "pg_regress $t" ;;
    *) _tap_result 1 "pg_regress $t"; echo "# $line" >&2 ;;
  esac
done
if [ -f "$regress/out/regression.diffs" ] && [ -s "$regress/out/regression.diffs" ]; then
  sed 's/^/# /' "$regress/out/regression.diffs" >&2
fi
done_testing
