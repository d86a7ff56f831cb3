/*
 * promises.c: creating and reading promises.
 *
 * Creation is idempotent on id (ON CONFLICT DO NOTHING); a new deadline may
 * wake the database worker at commit. Reads return raw rows (the timeout
 * rule is applied by timeout_rule.c). An executor holds a task's promise
 * pending while its attempt keeps effects. Settling lives in settle.c.
 */
#include "core/core.h"

#include "access/genam.h"
#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/relscan.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/transam.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_collation.h"
#include "catalog/pg_type.h"
#include "executor/tuptable.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"

/* Insert a pending promise unless the id exists. */
static DasaStatement insert_promise = {
	.sql = "INSERT INTO dasa.promises (id, param, tags, timeout_at, created_at, parent_id, root_id, owner) "
	"VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (id) DO NOTHING",
	.args = {TEXTOID, JSONBOID, JSONBOID, TIMESTAMPTZOID, TIMESTAMPTZOID, TEXTOID, TEXTOID, OIDOID},
};

/* One promise by id, every column. */
static DasaStatement select_promise = {
	.sql = "SELECT " DASA_PROMISE_SQL_COLUMNS " FROM dasa.promises WHERE id = $1",
	.args = {TEXTOID},
	.columns = {DASA_PROMISE_COLUMN_NAMES},
};

/* A param, value or tags document must fit dasa.max_payload_size. */
void
dasa_check_payload(Jsonb *value, const char *what)
{
	Size		size = VARSIZE(value);

	if (size > (Size) dasa_max_payload_kb * 1024)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("%s is too large", what),
				 errdetail("It takes %zu bytes; dasa.max_payload_size allows %d kB.",
						   size, dasa_max_payload_kb),
				 errhint("Store large data in a table of your own and put its key in the promise.")));
}

/* For a role that may not see it, a promise does not exist: the same error as an unknown id. */
void
dasa_raise_not_found(const char *id)
{
	ereport(ERROR,
			(errcode(ERRCODE_NO_DATA_FOUND),
			 errmsg("promise \"%s\" does not exist", id),
			 errhint("Create it with dasa.create_promise first.")));
}

/* An id taken by something the caller may not reuse it for. */
void
dasa_raise_id_conflict(const char *id, const char *detail)
{
	ereport(ERROR,
			(errcode(ERRCODE_UNIQUE_VIOLATION),
			 errmsg("id \"%s\" is already in use", id),
			 errdetail_internal("%s", detail),
			 errhint("Choose another id.")));
}

/*
 * Insert a pending promise owned by owner (a child of parent, if any)
 * unless the id exists; true if inserted.
 */
bool
dasa_promise_insert(const char *id, Jsonb *param, Jsonb *tags,
					TimestampTz timeout_at, TimestampTz now, DasaContext *parent, Oid owner)
{
	Datum		args[8] = {CStringGetTextDatum(id), PointerGetDatum(param),
		PointerGetDatum(tags), TimestampTzGetDatum(timeout_at), TimestampTzGetDatum(now),
		parent ? CStringGetTextDatum(parent->id) : (Datum) 0,
		parent ? CStringGetTextDatum(parent->root_id) : (Datum) 0,
	ObjectIdGetDatum(owner)};
	char		nulls[8] = {' ', param ? ' ' : 'n', ' ', ' ', ' ', parent ? ' ' : 'n', parent ? ' ' : 'n', ' '};

	if (dasa_run(&insert_promise, args, nulls, 0).n == 0)
		return false;
	dasa_wake_at_commit_deadline(timeout_at);
	return true;
}

/* The stored row of a promise (rows.n is 0 if there is none). */
DasaRows
dasa_promise_select(const char *id)
{
	Datum		args[1] = {CStringGetTextDatum(id)};

	return dasa_run(&select_promise, args, NULL, 1);
}

static Oid
owner_of(const DasaRows *rows, uint64 row)
{
	bool		isnull;

	return DatumGetObjectId(dasa_get(rows, row, "owner", &isnull));
}

/* The stored row of a promise role may see (rows.n is 0 if none, or not visible to role). */
DasaRows
dasa_promise_select_visible(const char *id, Oid role)
{
	DasaRows	rows = dasa_promise_select(id);

	if (rows.n == 1 && !dasa_may_access(role, owner_of(&rows, 0)))
		rows.n = 0;
	return rows;
}

/*
 * Insert a pending promise owned by owner (*inserted; rows empty), or find
 * the one owner already has with that id (its row in rows). An id that
 * belongs to another role is a conflict.
 */
DasaRows
dasa_promise_create(const char *id, Jsonb *param, Jsonb *tags, TimestampTz timeout_at,
					TimestampTz now, DasaContext *parent, Oid owner, bool *inserted)
{
	/* Twice at most: a row can only vanish between the statements by an aborted insert. */
	for (int attempt = 0; attempt < 2; attempt++)
	{
		DasaRows	found;

		if ((*inserted = dasa_promise_insert(id, param, tags, timeout_at, now, parent, owner)))
			return (DasaRows) {.n = 0};
		found = dasa_promise_select(id);
		if (found.n == 1 && owner_of(&found, 0) != owner)
			dasa_raise_id_conflict(id, "A promise with this id exists and belongs to another role.");
		if (found.n == 1)
			return found;
	}
	elog(ERROR, "promise \"%s\" neither inserted nor found", id);
}

/* The row of promise id in rel, read with a fresh snapshot into slot; false if none. */
static bool
fetch_by_id(Relation rel, const char *id, TupleTableSlot *slot, Snapshot snapshot)
{
	Relation	index = index_open(get_relname_relid("promises_pkey", RelationGetNamespace(rel)),
								   AccessShareLock);
	IndexScanDesc scan = index_beginscan(rel, index, snapshot, 1, 0);
	ScanKeyData key;
	bool		found;

	ScanKeyInit(&key, 1, BTEqualStrategyNumber, F_TEXTEQ, CStringGetTextDatum(id));
	key.sk_collation = C_COLLATION_OID;
	index_rescan(scan, &key, 1, NULL, 0);
	found = index_getnext_slot(scan, ForwardScanDirection, slot);
	index_endscan(scan);
	index_close(index, AccessShareLock);
	return found;
}

/* A fetched promise row as a reader sees it; its state and value copied into keep. */
static void
read_slot(Relation rel, TupleTableSlot *slot, DasaPromiseRead *read, bool *created_here,
		  MemoryContext keep)
{
	TupleDesc	desc = RelationGetDescr(rel);
	Datum	   *values = palloc(desc->natts * sizeof(Datum));
	bool	   *nulls = palloc(desc->natts * sizeof(bool));
	bool		should_free;
	HeapTuple	tuple = ExecFetchSlotHeapTuple(slot, false, &should_free);
	int			value = dasa_promise_column(desc, "value");
	int			settled_at = dasa_promise_column(desc, "settled_at");

	heap_deform_tuple(tuple, desc, values, nulls);
	*created_here = TransactionIdIsCurrentTransactionId(HeapTupleHeaderGetXmin(tuple->t_data));
	dasa_apply_timeout_rule(desc, values, nulls, GetCurrentTimestamp());
	read->state = MemoryContextStrdup(keep, DatumGetCString(DirectFunctionCall1(enum_out,
																				 values[dasa_promise_column(desc, "state")])));
	read->value = NULL;
	if (!nulls[value])
	{
		Jsonb	   *v = DatumGetJsonbP(values[value]);

		read->value = MemoryContextAlloc(keep, VARSIZE(v));
		memcpy(read->value, v, VARSIZE(v));
	}
	read->timeout_at = DatumGetTimestampTz(values[dasa_promise_column(desc, "timeout_at")]);
	read->settled_at = nulls[settled_at] ? 0 : DatumGetTimestampTz(values[settled_at]);
}

/*
 * Read a promise as it is now; false if there is none or role may not see
 * it. *created_here says whether this transaction inserted it. Read
 * directly from the primary key, and the table's lock is let go at once: a
 * session waiting in dasa.await re-reads its promise now and then and must
 * hold no lock in between, or a VACUUM FULL or ALTER TABLE queued behind it
 * would queue every dasa operation behind them, the settlement that would
 * end the wait included.
 */
bool
dasa_promise_read(const char *id, Oid role, DasaPromiseRead *read, bool *created_here,
				  MemoryContext keep)
{
	Relation	rel = table_open(get_relname_relid("promises", get_namespace_oid("dasa", false)),
								 AccessShareLock);
	TupleTableSlot *slot = table_slot_create(rel, NULL);
	Snapshot	snapshot = RegisterSnapshot(GetLatestSnapshot());
	bool		found = fetch_by_id(rel, id, slot, snapshot);

	if (found)
	{
		bool		isnull;
		Datum		owner = slot_getattr(slot, dasa_promise_column(RelationGetDescr(rel), "owner") + 1,
										 &isnull);

		found = !isnull && dasa_may_access(role, DatumGetObjectId(owner));
		if (found)
			read_slot(rel, slot, read, created_here, keep);
	}
	ExecDropSingleTupleTableSlot(slot);
	UnregisterSnapshot(snapshot);
	table_close(rel, AccessShareLock);
	return found;
}

static AttrNumber
attnum_of_promises(Relation rel, const char *name)
{
	AttrNumber	attnum = SPI_fnumber(RelationGetDescr(rel), name);

	if (attnum <= 0)
		elog(ERROR, "dasa.promises has no column \"%s\"", name);
	return attnum;
}

/*
 * Lock the row of the task's promise (its newest version) and confirm it is
 * still pending and before its deadline. True: nobody else can settle it
 * until this transaction ends, so the attempt may keep its effects. Done in
 * C on the row the claim saw: an SPI statement per task costs the burn-down
 * a third of its rate.
 */
bool
dasa_promise_hold_pending(DasaTask *task)
{
	Relation	rel = table_open(get_relname_relid("promises", get_namespace_oid("dasa", false)),
								 RowExclusiveLock);
	TupleTableSlot *slot = table_slot_create(rel, NULL);
	TM_FailureData failure;
	ItemPointerData tid = task->promise_tid;
	AttrNumber	state_attnum = attnum_of_promises(rel, "state");
	bool		pending = false;

	if (table_tuple_lock(rel, &tid, GetActiveSnapshot(), slot, GetCurrentCommandId(false),
						 LockTupleNoKeyExclusive, LockWaitBlock,
						 TUPLE_LOCK_FLAG_FIND_LAST_VERSION, &failure) == TM_Ok)
	{
		bool		isnull;
		Datum		state = slot_getattr(slot, state_attnum, &isnull);
		Datum		timeout_at = slot_getattr(slot, attnum_of_promises(rel, "timeout_at"), &isnull);

		pending = dasa_state_is_pending(TupleDescAttr(RelationGetDescr(rel), state_attnum - 1)->atttypid,
										state) &&
			DatumGetTimestampTz(timeout_at) > GetCurrentTimestamp();
	}
	ExecDropSingleTupleTableSlot(slot);
	table_close(rel, NoLock);
	return pending;
}
