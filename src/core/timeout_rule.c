/*
 * timeout_rule.c: the timeout rule as every reader sees it.
 *
 * A pending promise whose deadline has passed is never shown as pending: it
 * reads as rejected_timedout (or resolved, for a timer) settled at its
 * deadline, whether or not the worker has written that yet. This file turns
 * raw rows into what readers see; it writes nothing.
 */
#include "core/core.h"

#include "access/htup_details.h"
#include "catalog/pg_enum.h"
#include "funcapi.h"
#include "utils/builtins.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"
#include "utils/typcache.h"

/* SQL for the state an expired pending row settles to (row's tags in scope). */
const char *dasa_timeout_state_sql =
"CASE WHEN tags @> '{\"" DASA_TIMER_TAG "\": \"true\"}' "
"THEN 'resolved'::dasa.promise_state ELSE 'rejected_timedout'::dasa.promise_state END";

/* The enum values the rule needs, looked up once per enum type. */
static Oid	labels_typid = InvalidOid;
static Oid	pending_oid;
static Oid	resolved_oid;
static Oid	timedout_oid;

static Oid
enum_label_oid(Oid typid, const char *label)
{
	HeapTuple	tup = SearchSysCache2(ENUMTYPOIDNAME, ObjectIdGetDatum(typid),
									  CStringGetDatum(label));
	Oid			result;

	if (!HeapTupleIsValid(tup))
		elog(ERROR, "dasa.promise_state has no label \"%s\"", label);
	result = ((Form_pg_enum) GETSTRUCT(tup))->oid;
	ReleaseSysCache(tup);
	return result;
}

static void
load_labels(Oid typid)
{
	if (typid == labels_typid)
		return;
	pending_oid = enum_label_oid(typid, "pending");
	resolved_oid = enum_label_oid(typid, "resolved");
	timedout_oid = enum_label_oid(typid, "rejected_timedout");
	labels_typid = typid;
}

/* Is the enum value (of dasa.promise_state, type typid) 'pending'? */
bool
dasa_state_is_pending(Oid typid, Datum state)
{
	load_labels(typid);
	return DatumGetObjectId(state) == pending_oid;
}

/* The enum value 'pending' of dasa.promise_state (type typid). */
Datum
dasa_pending_state(Oid typid)
{
	load_labels(typid);
	return ObjectIdGetDatum(pending_oid);
}

/* Is this tag set a timer's ({"resonate:timer": "true"})? */
bool
dasa_tags_mark_timer(Jsonb *tags)
{
	JsonbValue *v;

	if (!JB_ROOT_IS_OBJECT(tags))
		return false;
	v = getKeyJsonValueFromContainer(&tags->root, DASA_TIMER_TAG,
									 strlen(DASA_TIMER_TAG), NULL);
	return v != NULL && v->type == jbvString && v->val.string.len == 4 &&
		memcmp(v->val.string.val, "true", 4) == 0;
}

/* The 0-based index of a column of a promise row; a missing one is a bug. */
int
dasa_promise_column(TupleDesc desc, const char *name)
{
	int			attnum = SPI_fnumber(desc, name);

	if (attnum <= 0)
		elog(ERROR, "promise row has no column \"%s\"", name);
	return attnum - 1;
}

/* Apply the timeout rule to one deformed promise row, in place. */
void
dasa_apply_timeout_rule(TupleDesc desc, Datum *values, bool *nulls, TimestampTz now)
{
	int			state = dasa_promise_column(desc, "state");
	int			timeout_at = dasa_promise_column(desc, "timeout_at");
	int			settled_at = dasa_promise_column(desc, "settled_at");
	int			tags = dasa_promise_column(desc, "tags");

	load_labels(TupleDescAttr(desc, state)->atttypid);
	if (DatumGetObjectId(values[state]) != pending_oid ||
		DatumGetTimestampTz(values[timeout_at]) > now)
		return;

	values[state] = ObjectIdGetDatum(dasa_tags_mark_timer(DatumGetJsonbP(values[tags]))
									 ? resolved_oid : timedout_oid);
	values[settled_at] = values[timeout_at];
	nulls[settled_at] = false;
}

/* A promise row of a statement's result as readers see it: state label, value, deadline. */
void
dasa_promise_read_row(const DasaRows *rows, uint64 row, DasaPromiseRead *out)
{
	TupleDesc	desc = rows->table->tupdesc;
	Datum	   *values = palloc(desc->natts * sizeof(Datum));
	bool	   *nulls = palloc(desc->natts * sizeof(bool));
	int			state = dasa_promise_column(desc, "state");
	int			value = dasa_promise_column(desc, "value");

	heap_deform_tuple(rows->table->vals[row], desc, values, nulls);
	dasa_apply_timeout_rule(desc, values, nulls, GetCurrentTimestamp());
	out->state = DatumGetCString(DirectFunctionCall1(enum_out, values[state]));
	out->value = nulls[value] ? NULL : DatumGetJsonbP(values[value]);
	out->timeout_at = DatumGetTimestampTz(values[dasa_promise_column(desc, "timeout_at")]);
	out->settled_at = nulls[dasa_promise_column(desc, "settled_at")] ? 0 :
		DatumGetTimestampTz(values[dasa_promise_column(desc, "settled_at")]);
}
