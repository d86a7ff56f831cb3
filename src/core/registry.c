/*
 * registry.c: dasa.functions, the registered functions.
 *
 * A registration binds a name to a procedure (jsonb) -> jsonb and to its
 * retry and timeout policy; the role that registered it owns it, and only
 * that role (or a superuser) may change or remove it. It says nothing about
 * whom the procedure runs as: an invocation runs as the role that invoked it.
 * The checks on what may be registered live with the SQL-callable wrappers
 * (api/register.c).
 */
#include "core/core.h"

#include "catalog/pg_type.h"
#include "miscadmin.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "utils/acl.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/builtins.h"

#define FUNCTION_COLUMNS \
	"name, proc, owner, max_attempts, initial_backoff, max_backoff, jitter, timeout, registered_at, queue"

static DasaStatement upsert_function = {
	.sql = "INSERT INTO dasa.functions AS f (name, proc, owner, max_attempts, initial_backoff,"
	"  max_backoff, jitter, timeout, registered_at, queue) "
	"VALUES ($1, $2, $3, $4, $5, $6, $7, $8, clock_timestamp(), $9) "
	"ON CONFLICT (name) DO UPDATE SET proc = excluded.proc, queue = excluded.queue, owner = excluded.owner,"
	"  max_attempts = excluded.max_attempts, initial_backoff = excluded.initial_backoff,"
	"  max_backoff = excluded.max_backoff, jitter = excluded.jitter,"
	"  timeout = excluded.timeout, registered_at = excluded.registered_at "
	"RETURNING " FUNCTION_COLUMNS,
	.since = "0.5.0",
	.args = {TEXTOID, TEXTOID, REGROLEOID, INT4OID, INTERVALOID, INTERVALOID, FLOAT8OID,
	INTERVALOID, TEXTOID},
	.columns = {"name", "proc", "owner", "max_attempts", "initial_backoff", "max_backoff",
	"jitter", "timeout", "registered_at", "queue"},
};

/* The registering role of $1, its row locked against concurrent changes. */
static DasaStatement lock_owner = {
	.sql = "SELECT owner::oid AS owner FROM dasa.functions WHERE name = $1 FOR UPDATE",
	.args = {TEXTOID},
	.columns = {"owner"},
};

static DasaStatement delete_function = {
	.sql = "DELETE FROM dasa.functions WHERE name = $1",
	.args = {TEXTOID},
};

/* What invoking needs to know of $1. */
static DasaStatement lookup_function = {
	.since = "0.5.0",
	.sql = "SELECT proc, queue, owner::oid AS owner, timeout FROM dasa.functions WHERE name = $1",
	.args = {TEXTOID},
	.columns = {"proc", "queue", "owner", "timeout"},
};

/* Owners of the functions registered on queue $1 other than function $2. */
static DasaStatement queue_owners = {
	.since = "0.5.0",
	.sql = "SELECT DISTINCT owner::oid AS owner FROM dasa.functions WHERE queue = $1 AND name <> $2",
	.args = {TEXTOID, TEXTOID},
	.columns = {"owner"},
};

/*
 * What invoking name needs: its procedure (in-database) or queue
 * (external), owner and default timeout; false if not registered. Error if
 * its procedure no longer exists.
 */
bool
dasa_registry_lookup(const char *name, DasaLookup *out)
{
	Datum		args[1] = {CStringGetTextDatum(name)};
	DasaRows	rows = dasa_run(&lookup_function, args, NULL, 1);
	bool		isnull;
	char	   *signature;

	if (rows.n == 0)
		return false;
	out->owner = DatumGetObjectId(dasa_get(&rows, 0, "owner", &isnull));
	out->timeout = *DatumGetIntervalP(dasa_get(&rows, 0, "timeout", &isnull));
	(void) dasa_get(&rows, 0, "queue", &isnull);
	out->queue = isnull ? NULL : dasa_get_text(&rows, 0, "queue");
	out->proc = InvalidOid;
	if (out->queue != NULL)
		return true;
	signature = dasa_get_text(&rows, 0, "proc");
	out->proc = dasa_procedure_resolve(signature);
	if (!OidIsValid(out->proc))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_FUNCTION),
				 errmsg("the procedure of function \"%s\", %s, does not exist", name, signature),
				 errdetail("It was dropped or renamed after the function was registered."),
				 errhint("Create it again, or register the function again with dasa.register.")));
	return true;
}

/*
 * The owners of each queue's functions, as this backend last read them
 * (for claims, which ask on every call). Any relcache invalidation forgets
 * them: a registration change sends one for dasa.functions at commit.
 */
typedef struct QueueOwners
{
	char	   *queue;
	int			n;
	Oid		   *owners;
} QueueOwners;

static List *remembered_queues = NIL;
static bool forget_registered = false;

static void
forget_queue_owners(Datum arg, Oid relid)
{
	ListCell   *lc;

	foreach(lc, remembered_queues)
	{
		QueueOwners *q = lfirst(lc);

		pfree(q->queue);
		pfree(q->owners);
		pfree(q);
	}
	list_free(remembered_queues);
	remembered_queues = NIL;
}

/* Tell every backend, at commit, that the registrations changed. */
static void
registrations_changed(void)
{
	CacheInvalidateRelcacheByRelid(get_relname_relid("functions", get_namespace_oid("dasa", false)));
}

/* The owners of queue's functions other than except_function (""): rows of "owner". */
static QueueOwners *
read_queue_owners(const char *queue, const char *except_function)
{
	Datum		args[2] = {CStringGetTextDatum(queue), CStringGetTextDatum(except_function)};
	DasaRows	rows = dasa_run(&queue_owners, args, NULL, 0);
	MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);
	QueueOwners *q = palloc(sizeof(QueueOwners));

	q->queue = pstrdup(queue);
	q->n = (int) rows.n;
	q->owners = palloc(sizeof(Oid) * Max(q->n, 1));
	MemoryContextSwitchTo(old);
	for (int i = 0; i < q->n; i++)
	{
		bool		isnull;

		q->owners[i] = DatumGetObjectId(dasa_get(&rows, i, "owner", &isnull));
	}
	return q;
}

/* The owners of queue's functions, remembered across calls. */
static QueueOwners *
queue_owners_of(const char *queue)
{
	ListCell   *lc;
	QueueOwners *q;

	if (!forget_registered)
	{
		CacheRegisterRelcacheCallback(forget_queue_owners, (Datum) 0);
		forget_registered = true;
	}
	foreach(lc, remembered_queues)
	{
		q = lfirst(lc);
		if (strcmp(q->queue, queue) == 0)
			return q;
	}
	q = read_queue_owners(queue, "");
	/* A transaction that changed registrations has not told the others yet: keep nothing. */
	if (GetTopTransactionIdIfAny() == InvalidTransactionId)
	{
		MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

		remembered_queues = lappend(remembered_queues, q);
		MemoryContextSwitchTo(old);
	}
	return q;
}

/* Error unless role may work queue (every owner of a function on it is role, or role is a member). */
void
dasa_registry_check_queue(const char *queue, const char *except_function, Oid role)
{
	QueueOwners *q = except_function[0] == '\0' ? queue_owners_of(queue) :
		read_queue_owners(queue, except_function);

	for (int i = 0; i < q->n; i++)
	{
		Oid			owner = q->owners[i];

		if (!dasa_may_access(role, owner))
			ereport(ERROR,
					(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
					 errmsg("queue \"%s\" belongs to role \"%s\"", queue,
							GetUserNameFromId(owner, true) ? GetUserNameFromId(owner, true) : "(dropped)"),
					 errdetail("Its functions were registered by that role."),
					 errhint("Working a queue, or registering on it, needs that role or membership in it.")));
	}
}

/* Lock the registration of name; error unless caller may change it. */
void
dasa_registry_check_owner(const char *name, Oid caller)
{
	Datum		args[1] = {CStringGetTextDatum(name)};
	DasaRows	rows = dasa_run(&lock_owner, args, NULL, 1);
	bool		isnull;
	Oid			owner;

	if (rows.n == 0)
		return;
	owner = DatumGetObjectId(dasa_get(&rows, 0, "owner", &isnull));
	if (owner != caller && !superuser_arg(caller))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("function \"%s\" was registered by role \"%s\"", name,
						GetUserNameFromId(owner, true) ? GetUserNameFromId(owner, true) : "(dropped)"),
				 errhint("Only that role or a superuser can change it; register under another name.")));
}

/* Insert or update a registration; returns its row. */
DasaRows
dasa_registry_upsert(const DasaRegistration *r)
{
	Datum		args[9] = {CStringGetTextDatum(r->name),
		r->queue ? (Datum) 0 : CStringGetTextDatum(dasa_procedure_signature(r->proc)),
		ObjectIdGetDatum(r->owner), Int32GetDatum(r->max_attempts),
		IntervalPGetDatum(r->initial_backoff), IntervalPGetDatum(r->max_backoff),
	Float8GetDatum(r->jitter), IntervalPGetDatum(r->timeout),
	r->queue ? CStringGetTextDatum(r->queue) : (Datum) 0};
	char		nulls[9] = {' ', r->queue ? 'n' : ' ', ' ', ' ', ' ', ' ', ' ', ' ', r->queue ? ' ' : 'n'};

	registrations_changed();
	return dasa_run(&upsert_function, args, nulls, 1);
}

/* Remove a registration; true if there was one. */
bool
dasa_registry_delete(const char *name)
{
	Datum		args[1] = {CStringGetTextDatum(name)};

	registrations_changed();
	return dasa_run(&delete_function, args, NULL, 0).n > 0;
}
