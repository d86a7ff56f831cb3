/*
 * listeners.c: being told when a promise settles, without waiting in
 * dasa.await (Resonate's listeners).
 *
 * A listener is a promise and a channel; the commit that settles the
 * promise NOTIFYs the channel with the promise's id. Like a callback it
 * marks the promise awaited, so settlements of other promises cost nothing
 * extra. A promise already settled is notified at once (at the caller's
 * commit).
 */
#include "core/core.h"

#include "catalog/pg_type.h"
#include "commands/async.h"
#include "utils/builtins.h"

static DasaStatement add_listener = {
	.since = "0.5.0",
	.sql = "INSERT INTO dasa.listeners (promise_id, channel) VALUES ($1, $2) ON CONFLICT DO NOTHING",
	.args = {TEXTOID, TEXTOID},
};

static DasaStatement take_listeners = {
	.since = "0.5.0",
	.sql = "DELETE FROM dasa.listeners WHERE promise_id = ANY($1) RETURNING promise_id, channel",
	.args = {TEXTARRAYOID},
	.columns = {"promise_id", "channel"},
};

/* Notify channel when id settles (now, at commit, if it has settled already). */
void
dasa_listener_add(const char *id, const char *channel)
{
	Datum		args[2] = {CStringGetTextDatum(id), CStringGetTextDatum(channel)};

	(void) dasa_settle_if_expired(id);
	if (dasa_promise_mark_awaited(id))
		(void) dasa_run(&add_listener, args, NULL, 0);
	else
		Async_Notify(channel, id);
}

/* The settled promises ids (awaited ones) notify their listeners at commit. */
void
dasa_listeners_fire(List *ids)
{
	Datum		args[1] = {dasa_text_array_of_list(ids)};
	DasaRows	taken = dasa_run(&take_listeners, args, NULL, 0);

	for (uint64 i = 0; i < taken.n; i++)
		Async_Notify(dasa_get_text(&taken, i, "channel"), dasa_get_text(&taken, i, "promise_id"));
}
