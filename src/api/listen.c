/*
 * listen.c: dasa.notify_on_settle (SQL-callable).
 *
 * Asks for a NOTIFY on a channel when a promise the caller may see settles
 * (core/listeners.c): a client LISTENs instead of holding a connection
 * blocked in dasa.await, or polling.
 */
#include "api/api.h"

#include "miscadmin.h"
#include "utils/builtins.h"

PG_FUNCTION_INFO_V1(dasa_notify_on_settle);
PG_FUNCTION_INFO_V1(dasa_listen_at);

static char *
check_channel(FunctionCallInfo fcinfo, int argno)
{
	char	   *channel;

	if (PG_ARGISNULL(argno))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("channel must not be NULL")));
	channel = text_to_cstring(PG_GETARG_TEXT_PP(argno));
	if (channel[0] == '\0' || strlen(channel) >= NAMEDATALEN)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid channel name \"%s\"", channel),
				 errdetail("A channel name has 1 to %d bytes.", NAMEDATALEN - 1)));
	return channel;
}

/*
 * dasa.notify_on_settle(id, channel): NOTIFY channel (payload: id) at the
 * commit that settles promise id, or at this transaction's commit if it is
 * settled already. Returns the promise.
 */
Datum
dasa_notify_on_settle(PG_FUNCTION_ARGS)
{
	MemoryContext caller_cxt = CurrentMemoryContext;
	char	   *id = dasa_check_id(fcinfo, 0);
	char	   *channel = check_channel(fcinfo, 1);
	Oid			caller = GetUserId();
	DasaUserSave save;
	DasaRows	found;
	Datum		result;

	dasa_switch_user(dasa_extension_owner(), &save);
	SPI_connect();
	if (dasa_promise_select_visible(id, caller).n == 0)
		dasa_raise_not_found(id);
	dasa_listener_add(id, channel);
	found = dasa_promise_select_visible(id, caller);
	result = dasa_row_as_promise(fcinfo, &found, 0, caller_cxt);
	SPI_finish();
	dasa_restore_user(&save);
	PG_RETURN_DATUM(result);
}

/*
 * dasa._listen_at(id, address, channel): a Resonate listener. When promise
 * id settles, an unblock message with its record goes to address's outbox
 * (resonate.outbox) and channel is NOTIFYed, at the commit that settles it;
 * a promise settled already gets neither (the caller has its record).
 * Returns the promise.
 */
Datum
dasa_listen_at(PG_FUNCTION_ARGS)
{
	MemoryContext caller_cxt = CurrentMemoryContext;
	char	   *id = dasa_check_id(fcinfo, 0);
	char	   *address;
	char	   *channel = check_channel(fcinfo, 2);
	Oid			caller = GetUserId();
	DasaUserSave save;
	DasaRows	found;
	Datum		result;

	if (PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("address must not be NULL")));
	address = text_to_cstring(PG_GETARG_TEXT_PP(1));
	dasa_switch_user(dasa_extension_owner(), &save);
	SPI_connect();
	if (dasa_promise_select_visible(id, caller).n == 0)
		dasa_raise_not_found(id);
	dasa_listener_add_address(id, channel, address);
	found = dasa_promise_select_visible(id, caller);
	result = dasa_row_as_promise(fcinfo, &found, 0, caller_cxt);
	SPI_finish();
	dasa_restore_user(&save);
	PG_RETURN_DATUM(result);
}
