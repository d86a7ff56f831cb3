#!/usr/bin/env bash
# The whole suite, run as the cluster's owner against a running cluster
# (PGHOST, PGPORT, DASA_PGDATA, DASA_WORK set by run.sh). One pg_prove run:
# pgTAP suites (test/tap/*.sql) and executable TAP scripts
# (test/scripts/*.sh, pg_regress among them), so it ends with one summary.
set -euo pipefail
suite=$(cd "$(dirname "$0")" && pwd)
export DASA_SUITE=$suite

psql -XqAt -d postgres -v ON_ERROR_STOP=1 <<'SQL'
SET client_min_messages = warning;
DROP DATABASE IF EXISTS dasa_tap;
CREATE DATABASE dasa_tap;
SQL
psql -XqAt -d dasa_tap -v ON_ERROR_STOP=1 \
  -c 'CREATE EXTENSION pgtap' -c 'CREATE EXTENSION dasa'

cd "$suite"
chmod +x scripts/*.sh
exec pg_prove --source Executable --timer -d dasa_tap \
  scripts/0*.sh tap/*.sql scripts/[1-9]*.sh
