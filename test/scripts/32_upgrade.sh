#!/usr/bin/env bash
# The upgrade path: 0.1.0 installed, then ALTER EXTENSION dasa UPDATE. The
# result must equal a fresh install, keep existing promises, and run
# functions (the executors idle on 0.1.0 and pick up work after the update).
set -uo pipefail
. "$DASA_SUITE/lib/tap.sh"
quiet() { PGOPTIONS='-c client_min_messages=warning' q "$@"; }

quiet postgres "DROP DATABASE IF EXISTS dasa_up_old" >/dev/null
quiet postgres "DROP DATABASE IF EXISTS dasa_up_new" >/dev/null
q postgres "CREATE DATABASE dasa_up_old" >/dev/null
q postgres "CREATE DATABASE dasa_up_new" >/dev/null
q dasa_up_old "CREATE EXTENSION dasa VERSION '0.1.0'" >/dev/null
q dasa_up_new "CREATE EXTENSION dasa" >/dev/null

# a promise as the 0.1.0 library wrote it
q dasa_up_old "INSERT INTO dasa.promises (id, param, timeout_at, created_at)
               VALUES ('kept', '{\"a\": 1}', now() + interval '1 hour', now())" >/dev/null
is "$(q dasa_up_old "SELECT extversion FROM pg_extension WHERE extname = 'dasa'")" 0.1.0 "0.1.0 installs"
is "$(psql -XAtq -v VERBOSITY=sqlstate -d dasa_up_old -c "SELECT dasa.create_promise('early', '1 hour')" 2>&1 | sed 's/^ERROR:  //')" 55000 \
   "this library refuses to work on the older SQL objects (55000, hint: ALTER EXTENSION dasa UPDATE)"
q dasa_up_old "ALTER EXTENSION dasa UPDATE" >/dev/null
is "$(q dasa_up_old "SELECT extversion FROM pg_extension WHERE extname = 'dasa'")" "$(q dasa_up_old "SELECT default_version FROM pg_available_extensions WHERE name = 'dasa'")" "ALTER EXTENSION dasa UPDATE reaches the current version"

# Everything the extension defines, described from the catalogs (pg_dump
# would only print CREATE EXTENSION for it).
dump() {
  q "$1" "
  SELECT 'column ' || c.relname || '.' || a.attnum || ' ' || a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
         || ' ' || a.attnotnull || ' ' || coalesce(pg_get_expr(d.adbin, d.adrelid), '') || ' ' || coalesce(co.collname, '')
  FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
  LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
  LEFT JOIN pg_collation co ON co.oid = a.attcollation AND a.attcollation <> 100
  WHERE c.relnamespace = 'dasa'::regnamespace AND a.attnum > 0 AND NOT a.attisdropped
  UNION ALL SELECT 'index ' || indexdef FROM pg_indexes WHERE schemaname = 'dasa'
  UNION ALL SELECT 'relation ' || relname || ' ' || relkind::text || ' ' || coalesce(relacl::text, '')
  FROM pg_class WHERE relnamespace = 'dasa'::regnamespace
  UNION ALL SELECT 'routine ' || pg_get_functiondef(oid) || ' ' || coalesce(proacl::text, '')
  FROM pg_proc WHERE pronamespace = 'dasa'::regnamespace
  UNION ALL SELECT 'view ' || viewname || ' ' || definition FROM pg_views WHERE schemaname = 'dasa'
  UNION ALL SELECT 'type ' || t.typname || ' ' || string_agg(e.enumlabel, ',' ORDER BY e.enumsortorder)
  FROM pg_type t JOIN pg_enum e ON e.enumtypid = t.oid
  WHERE t.typnamespace = 'dasa'::regnamespace GROUP BY t.typname
  ORDER BY 1"
}
dump dasa_up_old >"$DASA_WORK/upgraded.sql"
dump dasa_up_new >"$DASA_WORK/fresh.sql"
ok "the upgraded schema equals a fresh install" diff "$DASA_WORK/upgraded.sql" "$DASA_WORK/fresh.sql"
ok "(and the description is not empty: $(wc -l <"$DASA_WORK/fresh.sql") lines)" test "$(wc -l <"$DASA_WORK/fresh.sql")" -gt 50
is "$(q dasa_up_old "SELECT state || ' ' || param FROM dasa.get_promise('kept')")" 'pending {"a": 1}' \
   "promises created before the update are kept"

q dasa_up_old "
CREATE FUNCTION up_echo(args jsonb) RETURNS jsonb LANGUAGE sql AS \$\$ SELECT args \$\$;
SELECT count(*) FROM dasa.register('up_echo', 'up_echo(jsonb)');
SELECT dasa.invoke('up_echo', '{\"b\": 2}', 'up-1')" >/dev/null
ok "after the update, invocations run" wait_for 30 dasa_up_old \
   "SELECT state = 'resolved' AND value = '{\"b\": 2}' FROM dasa.get_promise('up-1')"
quiet postgres "DROP DATABASE dasa_up_old" >/dev/null
quiet postgres "DROP DATABASE dasa_up_new" >/dev/null
done_testing
