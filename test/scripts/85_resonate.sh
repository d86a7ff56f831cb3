#!/usr/bin/env bash
# The Resonate protocol, its promise kinds so far: resonate.resonate_rpc
# answers promise.create / get / settle with the protocol's envelopes,
# statuses and records (times in ms, optional fields left out), on dasa's
# own promises: one created through the protocol is dasa's, resolved from
# SQL it reads resolved through the protocol, and a role sees only its own.
set -uo pipefail
. "$DASA_SUITE/lib/tap.sh"
db=dasa_resonate
fresh_database $db
PGOPTIONS='-c client_min_messages=warning' q $db "DROP ROLE IF EXISTS rs_a; DROP ROLE IF EXISTS rs_b;
  CREATE ROLE rs_a LOGIN IN ROLE dasa_user; CREATE ROLE rs_b LOGIN IN ROLE dasa_user" >/dev/null

# rpc ROLE KIND CORRID DATA: the response to one request, as ROLE
rpc() {
  psql -XAtq -v ON_ERROR_STOP=1 -U "$1" -d $db -c "SELECT resonate.resonate_rpc(jsonb_build_object(
      'kind', '$2', 'head', jsonb_build_object('corrId', '$3', 'version', '2026-04-01'), 'data', '$4'::jsonb))"
}
# field JSON PATH...: one field of a response (jq-like, through PostgreSQL)
field() { q $db "SELECT '$1'::jsonb #>> '{$2}'"; }

far=4102444800000   # 2100-01-01 in ms
r=$(rpc rs_a promise.create c1 "{\"id\": \"rs-1\", \"timeoutAt\": $far, \"param\": {\"headers\": {}, \"data\": \"eA==\"}, \"tags\": {\"k\": \"v\"}}")
is "$(field "$r" head,status) $(field "$r" head,corrId) $(field "$r" head,version) $(field "$r" kind)" \
   "200 c1 2026-04-01 promise.create" "promise.create answers 200 with the request's kind, corrId and version"
is "$(field "$r" data,promise,state) $(field "$r" data,promise,timeoutAt) $(field "$r" data,promise,param,data) $(field "$r" data,promise,tags,k) $(field "$r" data,promise,value)" \
   "pending $far eA== v {}" "the record: pending, timeoutAt exact in ms, param and tags as given, value {}"
is "$(q $db "SELECT '$r'::jsonb #> '{data,promise}' ? 'settledAt'")" f "a pending record leaves settledAt out"
created=$(field "$r" data,promise,createdAt)
ok "createdAt is now, in ms" test "$(q $db "SELECT abs($created - extract(epoch FROM now()) * 1000) < 60000")" = t

r=$(rpc rs_a promise.create c2 "{\"id\": \"rs-1\", \"timeoutAt\": 1, \"param\": {\"data\": \"other\"}, \"tags\": {}}")
is "$(field "$r" head,status) $(field "$r" data,promise,param,data) $(field "$r" data,promise,createdAt)" "200 eA== $created" \
   "creating it again answers 200 with the stored record, unchanged"

r=$(rpc rs_a promise.get c3 '{"id": "rs-1"}')
is "$(field "$r" head,status) $(field "$r" data,promise,id)" "200 rs-1" "promise.get finds it"
is "$(field "$(rpc rs_a promise.get c4 '{"id": "rs-none"}')" head,status)" 404 "an unknown id is 404"
is "$(field "$(rpc rs_a promise.get c4 '{"id": "rs-none"}')" data)" "Promise not found" "with the reference's message"

is "$(psql -XAtq -U rs_a -d $db -c "SELECT state || ' ' || (param->>'data') FROM dasa.get_promise('rs-1')")" "pending eA==" \
   "it is a dasa promise: dasa.get_promise reads it"
psql -XAtq -U rs_a -d $db -c "SELECT count(*) FROM dasa.resolve('rs-1', '{\"headers\": {}, \"data\": \"eWVz\"}')" >/dev/null
r=$(rpc rs_a promise.get c5 '{"id": "rs-1"}')
is "$(field "$r" data,promise,state) $(field "$r" data,promise,value,data)" "resolved eWVz" \
   "resolved from SQL, it reads resolved through the protocol, with that value"
ok "and with settledAt" test "$(q $db "SELECT '$r'::jsonb #> '{data,promise}' ? 'settledAt'")" = t

rpc rs_a promise.create c6 "{\"id\": \"rs-2\", \"timeoutAt\": $far, \"param\": {}, \"tags\": {}}" >/dev/null
r=$(rpc rs_a promise.settle c7 '{"id": "rs-2", "state": "rejected", "value": {"data": "bm8="}}')
is "$(field "$r" head,status) $(field "$r" data,promise,state) $(field "$r" data,promise,value,data)" "200 rejected bm8=" \
   "promise.settle rejects with the value given"
r=$(rpc rs_a promise.settle c8 '{"id": "rs-2", "state": "resolved", "value": {}}')
is "$(field "$r" head,status) $(field "$r" data,promise,state)" "200 rejected" "settling it again answers 200 with it unchanged"
is "$(field "$(rpc rs_a promise.settle c9 '{"id": "rs-none", "state": "resolved", "value": {}}')" head,status)" 404 \
   "settling an unknown id is 404"
is "$(field "$(rpc rs_a promise.settle c9 '{"id": "rs-2", "state": "done"}')" head,status)" 400 "a bad state is 400"

past=$(q $db "SELECT round(extract(epoch FROM now() - interval '1 minute') * 1000)::bigint")
r=$(rpc rs_a promise.create c10 "{\"id\": \"rs-timer\", \"timeoutAt\": $past, \"param\": {}, \"tags\": {\"resonate:timer\": \"true\"}}")
is "$(field "$r" data,promise,state) $(field "$r" data,promise,createdAt) $(field "$r" data,promise,settledAt)" "resolved $past $past" \
   "a timer created past its deadline is resolved, created and settled at its deadline"
r=$(rpc rs_a promise.create c11 "{\"id\": \"rs-late\", \"timeoutAt\": $past, \"param\": {}, \"tags\": {}}")
is "$(field "$r" data,promise,state) $(field "$r" data,promise,value)" "rejected_timedout {}" \
   "any other promise created past its deadline is timed out"

is "$(field "$(rpc rs_b promise.get c12 '{"id": "rs-1"}')" head,status)" 404 "another role does not see it (404)"
is "$(field "$(rpc rs_a promise.search c13 '{}')" head,status)" 501 "promise.search is not implemented (501, as the reference)"
is "$(field "$(rpc rs_a no.such c14 '{}')" head,status)" 400 "an unknown kind is 400"
is "$(field "$(rpc rs_a promise.create c15 '{"id": 7}')" head,status)" 400 "a malformed request is 400"

# Listeners: the settling commit leaves an unblock message in the outbox of the address.
addr='poll://uni@default/p1'
dequeue() { psql -XAtq -v ON_ERROR_STOP=1 -U "$1" -d $db -c "SELECT count(*) || ' ' || coalesce(string_agg((promise->>'id') || ':' || (promise->>'state'), ',' ORDER BY promise->>'id'), '')
                                                                FROM resonate.dequeue_unblock('$addr', 100)"; }
rpc rs_a promise.create c20 "{\"id\": \"rs-ext\", \"timeoutAt\": $far, \"param\": {}, \"tags\": {\"resonate:scope\": \"global\"}}" >/dev/null
r=$(rpc rs_a promise.register_listener c21 "{\"awaited\": \"rs-ext\", \"address\": \"$addr\"}")
is "$(field "$r" head,status) $(field "$r" data,promise,state)" "200 pending" "promise.register_listener on a pending global promise: 200"
rpc rs_a promise.register_listener c22 "{\"awaited\": \"rs-ext\", \"address\": \"$addr\"}" >/dev/null
is "$(dequeue rs_a)" "0 " "nothing in the outbox while it is pending"
psql -XAtq -U rs_a -d $db -c "SELECT count(*) FROM dasa.resolve('rs-ext', '{\"data\": \"b2s=\"}')" >/dev/null
is "$(dequeue rs_b)" "0 " "another role does not take the message"
is "$(dequeue rs_a)" "1 rs-ext:resolved" "resolved from SQL, one unblock message with its record (listening twice is once)"
is "$(dequeue rs_a)" "0 " "taken once"
is "$(field "$(rpc rs_a promise.register_listener c23 '{"awaited": "rs-1", "address": "x"}')" head,status)" 422 \
   "a promise without a scope, target, timer or external tag cannot be listened to (422)"
is "$(field "$(rpc rs_a promise.register_listener c24 '{"awaited": "rs-none", "address": "x"}')" head,status)" 404 "an unknown one is 404"
r=$(rpc rs_a promise.register_listener c25 "{\"awaited\": \"rs-timer\", \"address\": \"$addr\"}")
is "$(field "$r" head,status) $(field "$r" data,promise,state) $(dequeue rs_a)" "200 resolved 0 " \
   "listening to a settled promise answers its record and sends nothing"
soon=$(q $db "SELECT round(extract(epoch FROM now() + interval '1 second') * 1000)::bigint")
rpc rs_a promise.create c26 "{\"id\": \"rs-soon\", \"timeoutAt\": $soon, \"param\": {}, \"tags\": {\"resonate:target\": \"poll://any@default\"}}" >/dev/null
rpc rs_a promise.register_listener c27 "{\"awaited\": \"rs-soon\", \"address\": \"$addr\"}" >/dev/null
ok "a listened promise timed out by the worker (no client) leaves its unblock message" wait_for 20 $db \
   "SELECT count(*) = 1 FROM resonate.outbox WHERE address = '$addr' AND promise->>'id' = 'rs-soon' AND promise->>'state' = 'rejected_timedout'"

ch=$(q $db "SELECT resonate.outbox_channel('poll://any@default')")
ok "outbox_channel gives a channel name that LISTEN accepts (at most 63 bytes)" test "${#ch}" -le 63
is "$(q $db "SELECT resonate.outbox_channel('poll://any@default') = '$ch'
                AND resonate.outbox_channel('poll://uni@default/1') <> '$ch'")" t "one channel per address, always the same"
is "$(q $db "SELECT count(*) FROM pg_proc WHERE pronamespace = 'resonate'::regnamespace
             AND NOT coalesce(proconfig::text LIKE '%search_path=pg_catalog, pg_temp%', false)")" 0 \
   "every function of the resonate schema pins its search_path"

PGOPTIONS='-c client_min_messages=warning' q $db "DROP OWNED BY rs_a, rs_b CASCADE; DROP ROLE rs_a; DROP ROLE rs_b" >/dev/null
done_testing
