#!/usr/bin/env bash
# The README runs as written: every ```sql block in it, in order, in psql
# (ON_ERROR_STOP), in a fresh database, as the application role `app`
# unless the block's first line says `-- as a superuser` or `-- as ROLE`.
# Then what the walk-through says it does is checked: each
# `SELECT dasa.await('id');  -- value` line's value, and the rows it leaves.
set -uo pipefail
. "$DASA_SUITE/lib/tap.sh"
readme=$DASA_SUITE/../README.md
db=dasa_readme
quiet() { PGOPTIONS='-c client_min_messages=warning' q "$@"; }
quiet postgres "DROP DATABASE IF EXISTS $db" >/dev/null
quiet postgres "DROP ROLE IF EXISTS approvals_app" >/dev/null
quiet postgres "DROP ROLE IF EXISTS alice" >/dev/null
quiet postgres "DROP ROLE IF EXISTS app" >/dev/null
q postgres "CREATE DATABASE $db" >/dev/null

blocks=$DASA_WORK/readme-blocks
rm -rf "$blocks"; mkdir -p "$blocks"
awk -v dir="$blocks" '
  /^```sql[ \t]*$/ { n++; file = sprintf("%s/%02d.sql", dir, n); inside = 1; next }
  /^```/ { inside = 0; next }
  inside { print > file }' "$readme"
count=$(ls "$blocks" | wc -l)
ok "the README has SQL blocks to run ($count)" test "$count" -ge 10

for f in "$blocks"/*.sql; do
  first=$(head -1 "$f")
  case $first in
    "-- as a superuser"*) role=postgres ;;
    "-- as "*) role=$(echo "$first" | awk '{print $3}') ;;
    *) role=app ;;
  esac
  line=$(head -1 "$f" | cut -c1-60)
  if out=$(psql -X -q -v ON_ERROR_STOP=1 -U "$role" -d $db -f "$f" 2>&1); then
    ok "block $(basename "$f" .sql) runs as $role: $line" true
  else
    ok "block $(basename "$f" .sql) runs as $role: $line" false
    diag "$out"
  fi
done

# The values the README shows next to its awaits.
while IFS= read -r l; do
  id=$(echo "$l" | sed -E "s/^SELECT dasa\.await\('([^']+)'\).*/\1/")
  want=${l##*-- }
  is "$(psql -XAtq -U app -d $db -c "SELECT dasa.await('$id')")" "$want" "dasa.await('$id') gives what the README shows"
done < <(grep -E "^SELECT dasa\.await\('[^']+'\); +-- [\[{\"]" "$readme")

is "$(q $db "SELECT string_agg(order_id || '=' || amount, ' ' ORDER BY order_id) FROM app.payments WHERE order_id <> 'o-8'")" \
   "o-1=12 o-2=5 o-3=7 o-7=30" "each order the walk-through charges is charged once"
is "$(q $db "SELECT state || ' ' || (SELECT count(*) FROM dasa.attempts WHERE task_id = 'refund-o-404') FROM dasa.promises WHERE id = 'refund-o-404'")" \
   "rejected 2" "the failing refund is rejected after its 2 attempts"
is "$(q $db "SELECT state FROM dasa.promises WHERE id = 'fulfil-o-8'")" rejected_canceled "the cancelled workflow is cancelled"
is "$(q $db "SELECT recipient FROM app.sent_mail")" ann@example.com "the SQL worker's effect committed with its completion"
is "$(q $db "SELECT state || ' ' || value FROM dasa.promises WHERE id = 'trip-1'")" 'resolved "booked"' \
   "the external task with children is complete"
is "$(q $db "SELECT state || ' ' || value FROM dasa.promises WHERE id = 'approve-o-9'")" 'resolved "yes"' \
   "approvals_app settled app's approval"
is "$(q $db "SELECT string_agg(name, ' ') FROM dasa.schedules")" nightly-report "one schedule is left"
is "$(q $db "SELECT count(*) FROM dasa.promises WHERE owner <> 'app'::regrole")" 0 "everything was made by the application role"

done_testing
