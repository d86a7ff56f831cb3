#!/usr/bin/env bash
# The Resonate protocol's tasks (docs/resonate-protocol.md, sections 2 and
# 4): a promise with a resonate:target gets a task and an execute message;
# acquire, release, heartbeat, fence, suspend (200 and 300), fulfill and
# their checks, answered as the reference does; settlements from SQL, the
# protocol or a deadline resume suspended tasks and fulfil their own; the
# database worker expires leases and sends pending tasks again with no
# client connected; one role cannot see or move another's tasks.
set -uo pipefail
. "$DASA_SUITE/lib/tap.sh"
db=dasa_resonate_tasks
fresh_database $db
PGOPTIONS='-c client_min_messages=warning' q $db "DROP ROLE IF EXISTS rt_a; DROP ROLE IF EXISTS rt_b;
  CREATE ROLE rt_a LOGIN IN ROLE dasa_user; CREATE ROLE rt_b LOGIN IN ROLE dasa_user" >/dev/null

# rpc ROLE KIND DATA: the response to one request, as ROLE
rpc() {
  psql -XAtq -v ON_ERROR_STOP=1 -U "$1" -d $db -c "SELECT resonate.resonate_rpc(jsonb_build_object(
      'kind', '$2', 'head', jsonb_build_object('corrId', 'c', 'version', '2026-04-01'), 'data', '$3'::jsonb))"
}
field() { q $db "SELECT '$1'::jsonb #>> '{$2}'"; }
status() { field "$1" head,status; }
as_a() { psql -XAtq -v ON_ERROR_STOP=1 -U rt_a -d $db -c "$1"; }
task() { q $db "SELECT state || ' v' || version || ' ' || array_to_string(resumes, ',') FROM resonate.tasks WHERE id = '$1'"; }
take() { as_a "SELECT task_id || ' v' || version FROM resonate.dequeue_execute('$1', 100) ORDER BY 1"; }
far=4102444800000
target='"resonate:target": "poll://any@wk"'
create() {  # create ROLE ID [more tags]: promise.create with a target
  rpc "$1" promise.create "{\"id\": \"$2\", \"timeoutAt\": $far, \"param\": {}, \"tags\": {$target${3:+, $3}}}"
}
settle() { echo "{\"kind\": \"promise.settle\", \"head\": {}, \"data\": {\"id\": \"$1\", \"state\": \"${2:-resolved}\", \"value\": {\"data\": \"eA==\"}}}"; }
callback() { echo "{\"kind\": \"promise.register_callback\", \"head\": {}, \"data\": {\"awaited\": \"$1\", \"awaiter\": \"$2\"}}"; }

# --- a task is born with its promise, and sent -----------------------------------
create rt_a t1 >/dev/null
is "$(task t1)" "pending v0 " "promise.create with a target: a pending task, version 0"
is "$(q $db "SELECT pg_typeof(version)::text FROM resonate.dequeue_execute('poll://none', 1) UNION ALL SELECT 'integer' LIMIT 1")" integer \
   "dequeue_execute's version is an int4"
is "$(take poll://any@wk)" "t1 v0" "an execute message for it waits at its target, taken once"
is "$(take poll://any@wk)" "" "and gone once taken"
rpc rt_a promise.create "{\"id\": \"t-plain\", \"timeoutAt\": $far, \"param\": {}, \"tags\": {}}" >/dev/null
is "$(q $db "SELECT count(*) FROM resonate.tasks WHERE id = 't-plain'")" 0 "a promise without a target has no task"
later=$(q $db "SELECT round(extract(epoch FROM now() + interval '1 hour') * 1000)::bigint")
create rt_a t-delayed "\"resonate:delay\": \"$later\"" >/dev/null
is "$(task t-delayed)|$(take poll://any@wk)" "pending v0 |" "a resonate:delay in the future: pending, not sent yet"

# --- acquire, release, heartbeat ------------------------------------------------
r=$(rpc rt_a task.acquire '{"id": "t1", "version": 1, "pid": "p1", "ttl": 60000}')
is "$(status "$r") $(field "$r" data)" "409 Version mismatch" "acquire at a wrong version: 409"
r=$(rpc rt_a task.acquire '{"id": "t1", "version": 0, "pid": "p1", "ttl": 60000}')
is "$(status "$r") $(field "$r" data,task,state) $(field "$r" data,task,version) $(field "$r" data,task,pid) $(field "$r" data,task,ttl) $(field "$r" data,promise,id)" \
   "200 acquired 1 p1 60000 t1" "acquire: version 1, pid and ttl, with its promise"
r=$(rpc rt_a task.acquire '{"id": "t1", "version": 0, "pid": "p2", "ttl": 60000}')
is "$(status "$r") $(field "$r" data)" "409 Task not in pending state" "a second acquire: 409"
is "$(status "$(rpc rt_a task.acquire '{"id": "t-none", "version": 0, "pid": "p", "ttl": 1}')")" 404 "an unknown task: 404"
lease=$(q $db "SELECT timer_at FROM resonate.tasks WHERE id = 't1'")
rpc rt_a task.heartbeat '{"pid": "p1", "tasks": [{"id": "t1", "version": 1}]}' >/dev/null
ok "a heartbeat extends the lease" test "$(q $db "SELECT timer_at > '$lease' FROM resonate.tasks WHERE id = 't1'")" = t
lease=$(q $db "SELECT timer_at FROM resonate.tasks WHERE id = 't1'")
rpc rt_a task.heartbeat '{"pid": "p-other", "tasks": [{"id": "t1", "version": 1}]}' >/dev/null
is "$(q $db "SELECT timer_at = '$lease' FROM resonate.tasks WHERE id = 't1'")" t "one from another pid does not"
r=$(rpc rt_a task.release '{"id": "t1", "version": 1}')
is "$(status "$r") $(task t1) $(take poll://any@wk)" "200 pending v1  t1 v1" "release: pending again, same version, sent again"
is "$(field "$(rpc rt_a task.release '{"id": "t1", "version": 1}')" data)" "Task not acquired" "releasing it again: 409 Task not acquired"

# --- fence, suspend, resume -----------------------------------------------------
r=$(rpc rt_a task.acquire '{"id": "t1", "version": 1, "pid": "p1", "ttl": 60000}')
is "$(field "$r" data,task,version)" 2 "acquired again: version 2"
child="{\"kind\": \"promise.create\", \"head\": {\"corrId\": \"in\"}, \"data\": {\"id\": \"t1:0\", \"timeoutAt\": $far, \"param\": {}, \"tags\": {\"resonate:scope\": \"global\"}}}"
r=$(rpc rt_a task.fence "{\"id\": \"t1\", \"version\": 2, \"action\": $child}")
is "$(field "$(rpc rt_a task.fence "{\"id\": \"t1\", \"version\": 9, \"action\": $child}")" data)" "Fence check failed" \
   "a fence at a wrong version: 409 Fence check failed"
is "$(status "$r") $(field "$r" data,action,kind) $(field "$r" data,action,head,corrId) $(field "$r" data,action,head,status) $(field "$r" data,action,data,promise,state) $(field "$r" data,preload)" \
   "200 promise.create in 200 pending []" "a fence runs the inner create and answers with its response"
r=$(rpc rt_a task.fence "{\"id\": \"t1\", \"version\": 2, \"action\": $(settle t-none)}")
is "$(status "$r") $(field "$r" data,action,head,status)" "200 404" "an inner settle of an unknown promise: 404 inside a 200"
rpc rt_a promise.create "{\"id\": \"t1:1\", \"timeoutAt\": $far, \"param\": {}, \"tags\": {}}" >/dev/null

r=$(rpc rt_a task.suspend '{"id": "t1", "version": 2, "actions": []}')
is "$(status "$r") $(field "$r" data)" "400 Actions list must not be empty" "suspend with no actions: 400"
r=$(rpc rt_a task.suspend "{\"id\": \"t1\", \"version\": 2, \"actions\": [$(callback t1:0 other)]}")
is "$(field "$r" data)" "Awaiter must be the suspending task" "suspend with another awaiter: 400"
r=$(rpc rt_a task.suspend "{\"id\": \"t1\", \"version\": 2, \"actions\": [$(callback t1 t1)]}")
is "$(field "$r" data)" "Task cannot await its own promise" "suspend on its own promise: 400"
r=$(rpc rt_a task.suspend "{\"id\": \"t1\", \"version\": 2, \"actions\": [$(callback t-none t1)]}")
is "$(status "$r") $(field "$r" data)" "422 {}" "suspend on an unknown promise: 422 with {} (as the reference)"
r=$(rpc rt_a task.suspend "{\"id\": \"t1\", \"version\": 2, \"actions\": [$(callback t1:0 t1), $(callback t1:1 t1)]}")
is "$(status "$r") $(task t1)" "200 suspended v2 " "suspend on two pending promises: suspended"
is "$(q $db "SELECT string_agg(awaited, ',' ORDER BY seq) FROM resonate.callbacks WHERE awaiter = 't1'")" "t1:0,t1:1" "with a callback on each"
as_a "SELECT state FROM dasa.resolve('t1:1', '{\"data\": \"eQ==\"}')" >/dev/null
is "$(task t1) $(take poll://any@wk)" "pending v2 t1:1 t1 v2" "resolved from SQL, one resumes the task: pending, resumes [t1:1], sent"
rpc rt_a promise.settle '{"id": "t1:0", "state": "rejected", "value": {}}' >/dev/null
is "$(task t1)" "pending v2 t1:1,t1:0" "the other settling meanwhile joins its resumes"
r=$(rpc rt_a task.acquire '{"id": "t1", "version": 2, "pid": "p1", "ttl": 60000}')
is "$(field "$r" data,task,resumes) $(field "$r" data,task,version)" "[] 3" "acquire clears resumes"
rpc rt_a promise.create "{\"id\": \"t1:2\", \"timeoutAt\": $far, \"param\": {}, \"tags\": {}}" >/dev/null
r=$(rpc rt_a task.suspend "{\"id\": \"t1\", \"version\": 3, \"actions\": [$(callback t1:2 t1), $(callback t1:0 t1)]}")
is "$(status "$r") $(task t1) $(q $db "SELECT count(*) FROM resonate.callbacks WHERE awaiter = 't1'")" "300 acquired v3  0" \
   "suspend when one awaited promise has settled: 300, still acquired, no callbacks"

# --- fulfil ------------------------------------------------------------------------
r=$(rpc rt_a task.fulfill "{\"id\": \"t1\", \"version\": 3, \"action\": $(settle t1:0)}")
is "$(status "$r") $(field "$r" data)" "400 Promise ID must match task ID" "fulfill with another promise: 400"
r=$(rpc rt_a task.fulfill "{\"id\": \"t1\", \"version\": 3, \"action\": $(settle t1)}")
is "$(status "$r") $(field "$r" data,promise,state) $(task t1)" "200 resolved fulfilled v3 " "fulfill: the promise resolved, the task fulfilled"
is "$(field "$(rpc rt_a task.fulfill "{\"id\": \"t1\", \"version\": 3, \"action\": $(settle t1)}")" data)" "Task not acquired" \
   "a second fulfill: 409 Task not acquired"
is "$(as_a "SELECT state FROM dasa.get_promise('t1')")" resolved "the workflow's promise reads resolved in SQL"

# --- task.create -----------------------------------------------------------------------
root() { echo "{\"pid\": \"p1\", \"ttl\": 60000, \"action\": {\"kind\": \"promise.create\", \"head\": {}, \"data\": {\"id\": \"$1\", \"timeoutAt\": ${2:-$far}, \"param\": {}, \"tags\": {${3-$target}}}}}"; }
r=$(rpc rt_a task.create "$(root r1 $far '"k": "v"')")
is "$(status "$r") $(field "$r" data)" "400 Action must have a resonate:target tag" "task.create without a target: 400"
r=$(rpc rt_a task.create "$(root r1)")
is "$(status "$r") $(field "$r" data,task,state) $(field "$r" data,task,version) $(field "$r" data,promise,state) $(take poll://any@wk)" \
   "200 acquired 1 pending " "task.create: the promise and its task, acquired at version 1, nothing sent"
is "$(field "$(rpc rt_a task.create "$(root r1)")" data)" "Task already exists" "again while acquired: 409"
is "$(field "$(rpc rt_a task.create "$(root t-plain)")" data)" "Promise has no address" "on a promise without a task: 422"
create rt_a r2 >/dev/null
r=$(rpc rt_a task.create "$(root r2)")
is "$(status "$r") $(field "$r" data,task,version)" "200 1" "on a pending task: acquired (version + 1)"
past=$(q $db "SELECT round(extract(epoch FROM now() - interval '1 minute') * 1000)::bigint")
r=$(rpc rt_a task.create "$(root r3 $past)")
is "$(status "$r") $(field "$r" data,task,state) $(field "$r" data,promise,state)" "200 fulfilled rejected_timedout" \
   "past its deadline: created timed out, its task fulfilled"

# --- register_callback -----------------------------------------------------------------
is "$(field "$(rpc rt_a promise.register_callback '{"awaited": "x", "awaiter": "x"}')" data)" "Awaited and awaiter must be different" "a callback on itself: 400"
is "$(field "$(rpc rt_a promise.register_callback '{"awaited": "t-none", "awaiter": "r1"}')" data)" "Awaited promise not found" "unknown awaited: 404"
is "$(field "$(rpc rt_a promise.register_callback '{"awaited": "t-plain", "awaiter": "t-none"}')" data)" "Awaiter promise not found" "unknown awaiter: 422"
is "$(field "$(rpc rt_a promise.register_callback '{"awaited": "r1", "awaiter": "t-plain"}')" data)" "Awaiter has no address" "an awaiter without a task: 422"
r=$(rpc rt_a promise.register_callback '{"awaited": "t-plain", "awaiter": "r1"}')
is "$(status "$r") $(field "$r" data,promise,id) $(q $db "SELECT count(*) FROM resonate.callbacks WHERE awaited = 't-plain'")" "200 t-plain 1" \
   "register_callback: 200 with the awaited promise, a callback written"
as_a "SELECT state FROM dasa.resolve('t-plain')" >/dev/null
is "$(task r1)" "acquired v1 t-plain" "its settlement reaches the acquired task's resumes"

# --- the database drives the timers, with no client ---------------------------------------
q $db "ALTER SYSTEM SET dasa.resonate_retry_timeout = '300ms'" >/dev/null
q $db "SELECT pg_reload_conf()" >/dev/null
sleep 0.3
create rt_a w1 >/dev/null
take poll://any@wk >/dev/null
ok "a pending task's execute message is sent again after the retry time (at least once)" \
   wait_for 10 $db "SELECT count(*) = 1 FROM resonate.outbox WHERE task_id = 'w1' AND kind = 'execute'"
take poll://any@wk >/dev/null
rpc rt_a task.acquire '{"id": "w1", "version": 0, "pid": "p1", "ttl": 200}' >/dev/null
ok "a lease that runs out returns the task to pending and sends it again" \
   wait_for 10 $db "SELECT state = 'pending' AND pid IS NULL FROM resonate.tasks WHERE id = 'w1'"
ok "with its version" wait_for 5 $db "SELECT count(*) = 1 FROM resonate.outbox WHERE task_id = 'w1' AND version = 1"
soon=$(q $db "SELECT round(extract(epoch FROM now() + interval '300 ms') * 1000)::bigint")
rpc rt_a promise.create "{\"id\": \"w2\", \"timeoutAt\": $soon, \"param\": {}, \"tags\": {$target}}" >/dev/null
ok "a task's promise that times out fulfils its task" \
   wait_for 10 $db "SELECT state = 'fulfilled' FROM resonate.tasks WHERE id = 'w2'"
is "$(q $db "SELECT count(*) FROM resonate.outbox WHERE task_id = 'w2'")" 0 "and takes its waiting execute message away"
create rt_a w3 >/dev/null
as_a "SELECT state FROM dasa.cancel('w3')" >/dev/null
is "$(task w3)" "fulfilled v0 " "cancelled from SQL, its task is fulfilled"
q $db "ALTER SYSTEM RESET dasa.resonate_retry_timeout" >/dev/null
q $db "SELECT pg_reload_conf()" >/dev/null
as_a "SELECT resonate.process_timeouts()" >/dev/null
ok "process_timeouts runs for an application role" true

# --- schedules ------------------------------------------------------------------------------
sched='{"id": "sch", "cron": "*/5 * * * *", "promiseId": "{{.id}}-{{.timestamp}}", "promiseTimeout": 60000, "promiseParam": {"data": "eA=="}, "promiseTags": {'$target'}}'
r=$(rpc rt_a schedule.create "$sched")
is "$(status "$r") $(field "$r" data,schedule,cron) $(field "$r" data,schedule,promiseId) $(field "$r" data,schedule,promiseTimeout)" \
   "200 */5 * * * * {{.id}}-{{.timestamp}} 60000" "schedule.create: the schedule record"
is "$(q $db "SELECT '$r'::jsonb #>> '{data,schedule,nextRunAt}' = (extract(epoch FROM dasa.cron_next('*/5 * * * *', now())) * 1000)::bigint::text
             AND NOT '$r'::jsonb #> '{data,schedule}' ? 'lastRunAt'")" t "its next firing is the cron's next time; no lastRunAt yet"
is "$(field "$(rpc rt_a schedule.create '{"id": "sch2", "cron": "61 * * * *", "promiseId": "x", "promiseTimeout": 1, "promiseTags": {'"$target"'}}')" data)" \
   "Invalid cron expression" "a bad cron: 400"
is "$(field "$(rpc rt_a schedule.create '{"id": "sch2", "cron": "* * * * *", "promiseId": "x", "promiseTimeout": 1, "promiseTags": {}}')" data)" \
   "promiseTags must include a resonate:target tag" "no target tag: 400"
is "$(as_a "SELECT function || ' ' || owner FROM dasa.schedules WHERE name = 'sch'")" "resonate:promise rt_a" \
   "it is a dasa schedule of the role, whose firings are promises"
q $db "UPDATE dasa.schedules SET next_run_at = now() WHERE name = 'sch'" >/dev/null
ok "the database worker fires it with no client: a promise from the template, with the schedule's tag" \
   wait_for 10 $db "SELECT count(*) = 1 FROM dasa.promises WHERE id LIKE 'sch-%' AND tags->>'resonate:schedule' = 'sch' AND owner = 'rt_a'::regrole"
is "$(q $db "SELECT state || ' ' || target FROM resonate.tasks WHERE id LIKE 'sch-%'")" "pending poll://any@wk" "and its task, sent to the target"
is "$(q $db "SELECT timeout_at - created_at BETWEEN interval '50 seconds' AND interval '61 seconds' FROM dasa.promises WHERE id LIKE 'sch-%'")" t \
   "its deadline is the firing time plus promiseTimeout"
r=$(rpc rt_a schedule.get '{"id": "sch"}')
ok "schedule.get shows lastRunAt" test "$(q $db "SELECT '$r'::jsonb #> '{data,schedule}' ? 'lastRunAt'")" = t
is "$(status "$(rpc rt_b schedule.get '{"id": "sch"}')") $(status "$(rpc rt_b schedule.delete '{"id": "sch"}')")" "404 404" \
   "another role can neither read nor delete it"
is "$(status "$(rpc rt_a schedule.delete '{"id": "sch"}')") $(status "$(rpc rt_a schedule.delete '{"id": "sch"}')")" "200 404" \
   "schedule.delete: 200, then 404"

# --- retention ---------------------------------------------------------------------------------
rpc rt_a task.create "$(root ret)" >/dev/null
step() { echo "{\"kind\": \"promise.create\", \"head\": {}, \"data\": {\"id\": \"$1\", \"timeoutAt\": $far, \"param\": {}, \"tags\": {\"resonate:origin\": \"ret\", \"resonate:branch\": \"ret\"}}}"; }
rpc rt_a task.fence "{\"id\": \"ret\", \"version\": 1, \"action\": $(step ret:0)}" >/dev/null
rpc rt_a task.fence "{\"id\": \"ret\", \"version\": 1, \"action\": $(settle ret:0)}" >/dev/null
as_a "SELECT dasa.purge('0 seconds')" >/dev/null
is "$(q $db "SELECT state FROM dasa.promises WHERE id = 'ret:0'")" resolved \
   "retention keeps a settled step of a Resonate workflow that is still pending (its replay reads it)"
r=$(rpc rt_a task.acquire '{"id": "ret", "version": 1, "pid": "p", "ttl": 1000}')
r=$(rpc rt_a task.fulfill "{\"id\": \"ret\", \"version\": 1, \"action\": $(settle ret)}")
as_a "SELECT dasa.purge('0 seconds')" >/dev/null
is "$(q $db "SELECT count(*) FROM dasa.promises WHERE id IN ('ret', 'ret:0')") $(q $db "SELECT count(*) FROM resonate.tasks WHERE id = 'ret'")" "0 0" \
   "once the workflow is settled, it goes with its steps and its task"

# --- one role cannot reach another's tasks ------------------------------------------------
create rt_a iso >/dev/null
is "$(psql -XAtq -U rt_b -d $db -c "SELECT count(*) FROM resonate.dequeue_execute('poll://any@wk', 100)")" 0 \
   "another role takes none of its execute messages"
is "$(status "$(rpc rt_b task.get '{"id": "iso"}')") $(status "$(rpc rt_b task.acquire '{"id": "iso", "version": 0, "pid": "x", "ttl": 1000}')")" "404 404" \
   "to another role its task does not exist"
rpc rt_b task.heartbeat '{"pid": "x", "tasks": [{"id": "iso", "version": 0}]}' >/dev/null
psql -XAtq -U rt_b -d $db -c "SELECT resonate._take('iso', 'x', 1000, 'rt_b')" >/dev/null 2>&1
psql -XAtq -U rt_b -d $db -c "SELECT resonate._take('iso', 'x', 1000, 'rt_a')" >/dev/null 2>&1
is "$(task iso)" "pending v0 " "its internal functions, called directly, move nothing (not as itself, nor as a role it is not)"
is "$(sqlstate_of $db "SET ROLE rt_b; SELECT resonate._fire_timers('infinity', 10)")" 42501 "the timer function is not callable by applications"
is "$(sqlstate_of $db "SET ROLE rt_b; SELECT * FROM resonate.tasks")" 42501 "nor are the tables readable"
is "$(q $db "SELECT count(*) FROM resonate.outbox WHERE task_id = 'iso'")" 1 "its execute message is still there for its own role"
done_testing
