/*
 * resonate_fence.c: dasa._resonate_fence (SQL-callable), the Resonate
 * protocol's most frequent request in C.
 *
 * A workflow of n steps sends 2n task.fence requests (create each step,
 * then settle it). resonate.resonate_rpc hands them here first; the common
 * shapes (a step without a target created, or a promise settled, within the
 * payload limits, outside a dasa invocation) are answered here with the
 * same statuses and records as the PL/pgSQL path, through the same kernel
 * calls. Anything else returns NULL and goes the general way, which also
 * gives the refusals of bad input.
 */
#include "api/api.h"

#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/numeric.h"

PG_FUNCTION_INFO_V1(dasa_resonate_fence);

/* The request's parts this path reads. */
typedef struct Fence
{
	Jsonb	   *req;
	JsonbValue *head;			/* the request's head (may be NULL) */
	JsonbValue *action;			/* the inner request */
	char	   *task_id;
	int64		version;
	bool		create;			/* promise.create, else promise.settle */
	char	   *id;				/* the inner promise's id */
	Jsonb	   *param;			/* create */
	Jsonb	   *tags;			/* create */
	TimestampTz timeout_at;		/* create */
	const char *state;			/* settle */
	Jsonb	   *value;			/* settle */
} Fence;

static JsonbValue *
field(JsonbContainer *c, const char *key)
{
	return c ? getKeyJsonValueFromContainer(c, key, strlen(key), NULL) : NULL;
}

static JsonbContainer *
object_of(JsonbValue *v)
{
	return (v && v->type == jbvBinary && JsonContainerIsObject(v->val.binary.data)) ? v->val.binary.data : NULL;
}

static char *
string_of(JsonbValue *v)
{
	return (v && v->type == jbvString) ? pnstrdup(v->val.string.val, v->val.string.len) : NULL;
}

/* A JSON number that is a whole number of at most 15 digits. */
static bool
integer_of(JsonbValue *v, int64 *out)
{
	char	   *text;

	if (v == NULL || v->type != jbvNumeric)
		return false;
	text = DatumGetCString(DirectFunctionCall1(numeric_out, NumericGetDatum(v->val.numeric)));
	if (strlen(text) > 15 || strspn(text, "-0123456789") != strlen(text))
		return false;
	*out = DatumGetInt64(DirectFunctionCall1(numeric_int8, NumericGetDatum(v->val.numeric)));
	return true;
}

/* An object member as a Jsonb of its own, within the payload limit; NULL otherwise. */
static Jsonb *
small_object(JsonbValue *v)
{
	Jsonb	   *j;

	if (object_of(v) == NULL)
		return NULL;
	j = JsonbValueToJsonb(v);
	return VARSIZE(j) <= (Size) dasa_max_payload_kb * 1024 ? j : NULL;
}

static bool
tags_are_strings(Jsonb *tags)
{
	JsonbIterator *it = JsonbIteratorInit(&tags->root);
	JsonbValue	v;
	JsonbIteratorToken tok;

	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
		if (tok == WJB_VALUE && v.type != jbvString)
			return false;
	return true;
}

/* Read a promise.create action this path can answer; false for anything else. */
static bool
read_create(Fence *f, JsonbContainer *data)
{
	JsonbValue *target;
	JsonbValue *timeout = field(data, "timeoutAt");
	int64		ms;

	f->param = field(data, "param") ? small_object(field(data, "param")) : dasa_no_tags();
	f->tags = field(data, "tags") ? small_object(field(data, "tags")) : dasa_no_tags();
	if (f->param == NULL || f->tags == NULL || !tags_are_strings(f->tags) || !integer_of(timeout, &ms))
		return false;
	target = field(&f->tags->root, "resonate:target");
	if (target && (target->type != jbvString || target->val.string.len > 0))
		return false;			/* a promise with a task: the general path */
	if (ms <= 0 || ms > INT64CONST(32503680000000))
		return false;			/* before 1970 or after 3000 */
	f->timeout_at = (TimestampTz) (ms * 1000) -
		(TimestampTz) ((POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * USECS_PER_DAY);
	return f->timeout_at > GetCurrentTimestamp();	/* one created past its deadline: the general path */
}

/* Read a promise.settle action this path can answer; false for anything else. */
static bool
read_settle(Fence *f, JsonbContainer *data)
{
	JsonbValue *value = field(data, "value");

	f->state = string_of(field(data, "state"));
	if (f->state == NULL || (strcmp(f->state, "resolved") != 0 && strcmp(f->state, "rejected") != 0 &&
							 strcmp(f->state, "rejected_canceled") != 0))
		return false;
	f->value = value ? small_object(value) : dasa_no_tags();
	return f->value != NULL;
}

static bool
read_request(Fence *f)
{
	JsonbContainer *data = object_of(field(&f->req->root, "data"));
	JsonbContainer *action;
	char	   *kind;

	f->head = field(&f->req->root, "head");
	f->task_id = string_of(field(data, "id"));
	f->action = field(data, "action");
	action = object_of(f->action);
	kind = string_of(field(action, "kind"));
	if (f->task_id == NULL || f->task_id[0] == '\0' || strlen(f->task_id) > DASA_MAX_ID_BYTES ||
		!integer_of(field(data, "version"), &f->version) || kind == NULL)
		return false;
	data = object_of(field(action, "data"));
	f->id = string_of(field(data, "id"));
	if (f->id == NULL || f->id[0] == '\0' || strlen(f->id) > DASA_MAX_ID_BYTES)
		return false;
	f->create = strcmp(kind, "promise.create") == 0;
	if (f->create)
		return read_create(f, data);
	return strcmp(kind, "promise.settle") == 0 && read_settle(f, data);
}

/* JSON text of v (null when absent). */
static void
append_value(StringInfo buf, JsonbValue *v)
{
	if (v == NULL || v->type == jbvNull)
		appendStringInfoString(buf, "null");
	else if (v->type == jbvString)
		escape_json(buf, pnstrdup(v->val.string.val, v->val.string.len));
	else if (v->type == jbvNumeric)
		appendStringInfoString(buf, DatumGetCString(DirectFunctionCall1(numeric_out,
																	   NumericGetDatum(v->val.numeric))));
	else if (v->type == jbvBool)
		appendStringInfoString(buf, v->val.boolean ? "true" : "false");
	else
		(void) JsonbToCString(buf, v->val.binary.data, v->val.binary.len);
}

static void
append_ms(StringInfo buf, const char *key, TimestampTz t)
{
	appendStringInfo(buf, ",\"%s\":" INT64_FORMAT, key,
					 (t + (TimestampTz) ((POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * USECS_PER_DAY) + 500) / 1000);
}

/* The promise record of row 0 of rows (resonate._record's shape). */
static void
append_record(StringInfo buf, const DasaRows *rows)
{
	DasaPromiseRead read;
	Jsonb	   *param = dasa_get_jsonb_copy(rows, 0, "param");
	Jsonb	   *tags = dasa_get_jsonb_copy(rows, 0, "tags");
	bool		pending;

	dasa_promise_read_row(rows, 0, &read);
	pending = strcmp(read.state, "pending") == 0;
	appendStringInfoString(buf, "{\"id\":");
	escape_json(buf, dasa_get_text(rows, 0, "id"));
	appendStringInfo(buf, ",\"state\":\"%s\",\"param\":", read.state);
	appendStringInfoString(buf, param ? JsonbToCString(NULL, &param->root, VARSIZE(param)) : "{}");
	appendStringInfoString(buf, ",\"value\":");
	appendStringInfoString(buf, (!pending && read.value) ? JsonbToCString(NULL, &read.value->root, VARSIZE(read.value)) : "{}");
	appendStringInfoString(buf, ",\"tags\":");
	appendStringInfoString(buf, tags ? JsonbToCString(NULL, &tags->root, VARSIZE(tags)) : "{}");
	append_ms(buf, "timeoutAt", read.timeout_at);
	append_ms(buf, "createdAt", dasa_get_timestamp(rows, 0, "created_at"));
	if (!pending)
		append_ms(buf, "settledAt", read.settled_at);
	appendStringInfoChar(buf, '}');
}

/* A response envelope: kind and head (corrId, version) from container, status, then data. */
static void
append_head(StringInfo buf, JsonbContainer *of, int status)
{
	JsonbContainer *head = object_of(field(of, "head"));

	appendStringInfoString(buf, "{\"kind\":");
	append_value(buf, field(of, "kind"));
	appendStringInfoString(buf, ",\"head\":{\"corrId\":");
	append_value(buf, field(head, "corrId"));
	appendStringInfo(buf, ",\"status\":%d,\"version\":", status);
	append_value(buf, field(head, "version"));
	appendStringInfoString(buf, "},\"data\":");
}

/*
 * The inner action, run as the caller through the kernel: its status, and
 * the promise's row in *rows; -1 to leave the request to the general path.
 */
static int
run_action(Fence *f, Oid caller, DasaRows *rows)
{
	bool		inserted;
	bool		isnull;

	*rows = dasa_promise_select(f->id);
	if (rows->n == 1 && !dasa_may_access(caller, DatumGetObjectId(dasa_get(rows, 0, "owner", &isnull))))
		return f->create ? -1 : 404;	/* another role's id: taken (the general path says so), or unknown */
	if (!f->create)
	{
		if (rows->n == 0)
			return 404;
		*rows = dasa_settle_or_read(f->id, f->state, f->value, caller);
		return 200;
	}
	if (rows->n == 0)
	{
		TimestampTz now = GetCurrentTimestamp();

		(void) dasa_promise_create(f->id, f->param, f->tags, f->timeout_at, now, NULL, caller, &inserted);
		*rows = dasa_promise_select(f->id);
	}
	return 200;
}

/*
 * dasa._resonate_fence(req): the response to a task.fence request, or NULL
 * if it is not one this path answers.
 */
Datum
dasa_resonate_fence(PG_FUNCTION_ARGS)
{
	Fence		f = {.req = PG_GETARG_JSONB_P(0)};
	Oid			caller = GetUserId();
	DasaUserSave save;
	StringInfoData buf;
	int			status;
	DasaRows	rows;

	if (!JB_ROOT_IS_OBJECT(f.req) || !read_request(&f) || dasa_context() != NULL)
		PG_RETURN_NULL();
	initStringInfo(&buf);
	dasa_switch_user(dasa_extension_owner(), &save);
	SPI_connect();
	status = dasa_resonate_fence_status(f.task_id, f.version, caller);
	if (status == 404)
		append_head(&buf, &f.req->root, 404), appendStringInfoString(&buf, "\"Task not found\"}");
	else if (status == 409)
		append_head(&buf, &f.req->root, 409), appendStringInfoString(&buf, "\"Fence check failed\"}");
	else if ((status = run_action(&f, caller, &rows)) >= 0)
	{
		append_head(&buf, &f.req->root, 200);
		appendStringInfoString(&buf, "{\"action\":");
		append_head(&buf, object_of(f.action), status);
		if (status == 404)
			appendStringInfoString(&buf, "\"Promise not found\"");
		else
		{
			appendStringInfoString(&buf, "{\"promise\":");
			append_record(&buf, &rows);
			appendStringInfoChar(&buf, '}');
		}
		appendStringInfoString(&buf, "},\"preload\":[]}}");
	}
	SPI_finish();
	dasa_restore_user(&save);
	if (status < 0)
		PG_RETURN_NULL();
	PG_RETURN_DATUM(DirectFunctionCall1(jsonb_in, CStringGetDatum(buf.data)));
}
