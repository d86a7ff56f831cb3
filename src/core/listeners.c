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

static DasaStatement add_address_listener = {
	.since = "0.10.0",
	.sql = "INSERT INTO dasa.listeners (promise_id, channel, address) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
	.args = {TEXTOID, TEXTOID, TEXTOID},
};

/*
 * Take the listeners of the settled promises $1; those with a Resonate
 * address get an unblock message with the promise's record in the outbox.
 */
static DasaStatement take_listeners = {
	.since = "0.10.0",
	.sql = "WITH taken AS (DELETE FROM dasa.listeners WHERE promise_id = ANY($1)"
	"    RETURNING promise_id, channel, address),"
	"  unblocks AS (INSERT INTO resonate.outbox (address, kind, promise, owner)"
	"    SELECT t.address, 'unblock', resonate._record(p), p.owner"
	"    FROM taken t JOIN dasa.promises p ON p.id = t.promise_id WHERE t.address IS NOT NULL) "
	"SELECT promise_id, channel FROM taken",
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

/*
 * A Resonate listener: when id settles, an unblock message for address (and
 * a NOTIFY of channel, at commit). Nothing if it has settled already.
 */
void
dasa_listener_add_address(const char *id, const char *channel, const char *address)
{
	Datum		args[3] = {CStringGetTextDatum(id), CStringGetTextDatum(channel), CStringGetTextDatum(address)};

	(void) dasa_settle_if_expired(id);
	if (dasa_promise_mark_awaited(id))
		(void) dasa_run(&add_address_listener, args, NULL, 0);
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
