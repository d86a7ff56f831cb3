/*
 * rejection.c: what a failed attempt leaves: its error, bounded, and the
 * value its promise is rejected with.
 *
 * An error's message and detail are cut to a documented size with a marker,
 * so that no error, however large, can make recording it fail. When a
 * function fails because a promise it awaited was rejected, canceled or
 * timed out, the detail is that promise's value as JSON: it is carried as
 * JSON inside the rejection, not as an escaped string, so rejections passed
 * up a call tree grow by a few bytes per level, not doubling.
 */
#include "core/core.h"

#include "common/jsonapi.h"
#include "lib/stringinfo.h"
#include "mb/pg_wchar.h"
#include "utils/builtins.h"
#include "utils/json.h"

/* Longest message kept, and longest detail (a child's rejection included), in bytes. */
#define MAX_MESSAGE_BYTES 8192
#define MAX_DETAIL_BYTES (64 * 1024)

/* text cut to at most limit bytes (on a character boundary), with a marker if cut. */
static char *
bounded(const char *text, int limit)
{
	int			len = strlen(text);
	int			keep;

	if (len <= limit)
		return pstrdup(text);
	keep = pg_mbcliplen(text, len, limit);
	return psprintf("%.*s... (truncated: %d bytes in all)", keep, text, len);
}

/* Cut the error's message and detail to their limits, in place. */
void
dasa_bound_error(ErrorData *error)
{
	if (error->message != NULL)
		error->message = bounded(error->message, MAX_MESSAGE_BYTES);
	if (error->detail != NULL)
		error->detail = bounded(error->detail, MAX_DETAIL_BYTES);
}

/* Is the detail an awaited promise's value (DA001-DA003), valid JSON? */
static bool
detail_is_json_value(ErrorData *error)
{
	JsonLexContext *lex;

	if (error->detail == NULL ||
		(error->sqlerrcode != ERRCODE_DASA_PROMISE_REJECTED &&
		 error->sqlerrcode != ERRCODE_DASA_PROMISE_CANCELED &&
		 error->sqlerrcode != ERRCODE_DASA_PROMISE_TIMEDOUT))
		return false;
	lex = makeJsonLexContextCstringLen(error->detail, strlen(error->detail),
									   GetDatabaseEncoding(), false);
	return pg_parse_json(lex, &nullSemAction) == JSON_SUCCESS;
}

/* The rejection value: {"sqlstate", "message", "detail", "attempts"} (the error bounded first). */
Jsonb *
dasa_rejection_value(ErrorData *error, int attempts)
{
	StringInfoData buf;

	initStringInfo(&buf);
	appendStringInfoString(&buf, "{\"sqlstate\": ");
	escape_json(&buf, unpack_sql_state(error->sqlerrcode));
	appendStringInfoString(&buf, ", \"message\": ");
	escape_json(&buf, error->message ? error->message : "");
	appendStringInfoString(&buf, ", \"detail\": ");
	if (detail_is_json_value(error))
		appendStringInfoString(&buf, error->detail);
	else if (error->detail)
		escape_json(&buf, error->detail);
	else
		appendStringInfoString(&buf, "null");
	appendStringInfo(&buf, ", \"attempts\": %d}", attempts);
	return DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(buf.data)));
}
