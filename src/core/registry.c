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
	"name, proc, owner, max_attempts, initial_backoff, max_backoff, jitter, timeout, registered_at, queue," \
	" attempt_timeout, max_running"

static DasaStatement upsert_function = {
	.sql = "INSERT INTO dasa.functions AS f (name, proc, owner, max_attempts, initial_backoff,"
	"  max_backoff, jitter, timeout, registered_at, queue, attempt_timeout, max_running) "
	"VALUES ($1, $2, $3, $4, $5, $6, $7, $8, clock_timestamp(), $9, $10, $11) "
	"ON CONFLICT (name) DO UPDATE SET proc = excluded.proc, queue = excluded.queue, owner = excluded.owner,"
	"  max_attempts = excluded.max_attempts, initial_backoff = excluded.initial_backoff,"
	"  max_backoff = excluded.max_backoff, jitter = excluded.jitter,"
	"  timeout = excluded.timeout, registered_at = excluded.registered_at,"
	"  attempt_timeout = excluded.attempt_timeout, max_running = excluded.max_running "
	"RETURNING " FUNCTION_COLUMNS,
	.since = "0.9.0",
	.args = {TEXTOID, TEXTOID, REGROLEOID, INT4OID, INTERVALOID, INTERVALOID, FLOAT8OID,
	INTERVALOID, TEXTOID, INTERVALOID, INT4OID},
	.columns = {"name", "proc", "owner", "max_attempts", "initial_backoff", "max_backoff",
	"jitter", "timeout", "registered_at", "queue", "attempt_timeout", "max_running"},
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
	.since = "0.9.0",
	.sql = "SELECT proc, queue, owner::oid AS owner, timeout, attempt_timeout, coalesce(max_running, 0) AS max_running"
	"  FROM dasa.functions WHERE name = $1",
	.args = {TEXTOID},
	.columns = {"proc", "queue", "owner", "timeout", "attempt_timeout", "max_running"},
};

/* Owners of the functions registered on queue $1 other than function $2. */
static DasaStatement queue_owners = {
	.since = "0.5.0",
	.sql = "SELECT DISTINCT owner::oid AS owner FROM dasa.functions WHERE queue = $1 AND name <> $2",
	.args = {TEXTOID, TEXTOID},
	.columns = {"owner"},
};

/*
 * What this backend last read of each registration and of each queue's
 * owners: invoking and claiming ask on every call. Any relcache
 * invalidation forgets all of it: a registration change sends one for
 * dasa.functions, which other backends take in before their next
 * statement, and this one at its next command or if it rolls back.
 */
typedef struct Registration
{
	char	   *name;			/* the key */
	bool		exists;
	char	   *signature;		/* in-database: the procedure's signature */
	char	   *queue;			/* external: the queue */
	Oid			owner;
	Interval	timeout;
	Interval	attempt_timeout;
	int			max_running;
} Registration;

typedef struct QueueOwners
{
	char	   *queue;			/* the key */
	int			n;
	Oid		   *owners;
} QueueOwners;

static MemoryContext memo_cxt = NULL;
static HTAB *registrations = NULL;
static HTAB *queues = NULL;

static void
forget_registrations(Datum arg, Oid relid)
{
	registrations = NULL;
	queues = NULL;
	if (memo_cxt != NULL)
		MemoryContextReset(memo_cxt);
}

/* The memo's tables, made on first use. */
static void
memo_ready(void)
{
	MemoryContext old;

	if (memo_cxt == NULL)
	{
		memo_cxt = AllocSetContextCreate(TopMemoryContext, "dasa registrations", ALLOCSET_SMALL_SIZES);
		CacheRegisterRelcacheCallback(forget_registrations, (Datum) 0);
	}
	if (registrations != NULL)
		return;
	old = MemoryContextSwitchTo(memo_cxt);
	registrations = dasa_id_table("dasa registrations", 64, sizeof(Registration));
	queues = dasa_id_table("dasa queue owners", 16, sizeof(QueueOwners));
	MemoryContextSwitchTo(old);
}

/* The registration of name as stored, remembered; NULL if there is none. Connected to SPI. */
static const Registration *
registration_of(const char *name)
{
	Datum		args[1] = {CStringGetTextDatum(name)};
	Registration *r;
	DasaRows	rows;
	MemoryContext old;
	bool		found,
				isnull;

	memo_ready();
	r = hash_search(registrations, &name, HASH_FIND, NULL);
	if (r != NULL)
		return r->exists ? r : NULL;
	rows = dasa_run(&lookup_function, args, NULL, 1);
	if (registrations == NULL)
		memo_ready();			/* (reading may have taken in an invalidation) */
	old = MemoryContextSwitchTo(memo_cxt);
	r = hash_search(registrations, &name, HASH_ENTER, &found);
	r->name = pstrdup(name);
	r->exists = rows.n == 1;
	if (r->exists)
	{
		r->owner = DatumGetObjectId(dasa_get(&rows, 0, "owner", &isnull));
		r->timeout = *DatumGetIntervalP(dasa_get(&rows, 0, "timeout", &isnull));
		r->attempt_timeout = *DatumGetIntervalP(dasa_get(&rows, 0, "attempt_timeout", &isnull));
		r->max_running = dasa_get_int32(&rows, 0, "max_running");
		(void) dasa_get(&rows, 0, "queue", &isnull);
		r->queue = isnull ? NULL : pstrdup(dasa_get_text(&rows, 0, "queue"));
		r->signature = r->queue ? NULL : pstrdup(dasa_get_text(&rows, 0, "proc"));
	}
	MemoryContextSwitchTo(old);
	return r->exists ? r : NULL;
}

/*
 * What invoking name needs: its procedure (in-database) or queue
 * (external), owner and default timeout; false if not registered. Error if
 * its procedure no longer exists.
 */
bool
dasa_registry_lookup(const char *name, DasaLookup *out)
{
	const Registration *r = registration_of(name);
	char	   *signature;

	if (r == NULL)
		return false;
	/* (copies: the memo may be forgotten at any catalog read) */
	out->owner = r->owner;
	out->timeout = r->timeout;
	out->attempt_timeout = r->attempt_timeout;
	out->max_running = r->max_running;
	out->queue = r->queue ? pstrdup(r->queue) : NULL;
	out->proc = InvalidOid;
	if (out->queue != NULL)
		return true;
	signature = pstrdup(r->signature);
	out->proc = dasa_procedure_resolve(signature);
	if (!OidIsValid(out->proc))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_FUNCTION),
				 errmsg("the procedure of function \"%s\", %s, does not exist", name, signature),
				 errdetail("It was dropped or renamed after the function was registered."),
				 errhint("Create it again, or register the function again with dasa.register.")));
	return true;
}

/* Tell every backend, at commit, that the registrations changed. */
static void
registrations_changed(void)
{
	CacheInvalidateRelcacheByRelid(get_relname_relid("functions", get_namespace_oid("dasa", false)));
}

/* The owners of queue's functions other than except_function (""). */
static QueueOwners *
read_queue_owners(const char *queue, const char *except_function)
{
	Datum		args[2] = {CStringGetTextDatum(queue), CStringGetTextDatum(except_function)};
	DasaRows	rows = dasa_run(&queue_owners, args, NULL, 0);
	QueueOwners *q = palloc(sizeof(QueueOwners));

	q->queue = pstrdup(queue);
	q->n = (int) rows.n;
	q->owners = palloc(sizeof(Oid) * Max(q->n, 1));
	for (int i = 0; i < q->n; i++)
	{
		bool		isnull;

		q->owners[i] = DatumGetObjectId(dasa_get(&rows, i, "owner", &isnull));
	}
	return q;
}

/* The owners of queue's functions, remembered. */
static QueueOwners *
queue_owners_of(const char *queue)
{
	QueueOwners *q;
	QueueOwners *read;
	MemoryContext old;

	memo_ready();
	q = hash_search(queues, &queue, HASH_FIND, NULL);
	if (q != NULL)
		return q;
	read = read_queue_owners(queue, "");
	if (queues == NULL)
		memo_ready();
	old = MemoryContextSwitchTo(memo_cxt);
	q = hash_search(queues, &queue, HASH_ENTER, NULL);
	q->queue = pstrdup(queue);
	q->n = read->n;
	q->owners = palloc(sizeof(Oid) * Max(q->n, 1));
	memcpy(q->owners, read->owners, sizeof(Oid) * q->n);
	MemoryContextSwitchTo(old);
	return q;
}

/* Error unless role may work queue (every owner of a function on it is role, or role is a member). */
void
dasa_registry_check_queue(const char *queue, const char *except_function, Oid role)
{
	QueueOwners *q = except_function[0] == '\0' ? queue_owners_of(queue) :
		read_queue_owners(queue, except_function);
	int			n = q->n;
	Oid		   *owners = palloc(sizeof(Oid) * Max(n, 1));

	/* (a copy: checking roles may read catalogs, and the memo may be forgotten then) */
	memcpy(owners, q->owners, sizeof(Oid) * n);
	for (int i = 0; i < n; i++)
	{
		Oid			owner = owners[i];

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
	dasa_check_changer(&lock_owner, name, caller, "function \"%s\" was registered by role \"%s\"",
					   "Only that role or a superuser can change it; register under another name.");
}

/* Insert or update a registration; returns its row. */
DasaRows
dasa_registry_upsert(const DasaRegistration *r)
{
	Datum		args[11] = {CStringGetTextDatum(r->name),
		r->queue ? (Datum) 0 : CStringGetTextDatum(dasa_procedure_signature(r->proc)),
		ObjectIdGetDatum(r->owner), Int32GetDatum(r->max_attempts),
		IntervalPGetDatum(r->initial_backoff), IntervalPGetDatum(r->max_backoff),
	Float8GetDatum(r->jitter), IntervalPGetDatum(r->timeout),
		r->queue ? CStringGetTextDatum(r->queue) : (Datum) 0,
		IntervalPGetDatum(r->attempt_timeout),
	Int32GetDatum(r->max_running)};
	char		nulls[11] = {' ', r->queue ? 'n' : ' ', ' ', ' ', ' ', ' ', ' ', ' ', r->queue ? ' ' : 'n', ' ',
	r->max_running > 0 ? ' ' : 'n'};

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
