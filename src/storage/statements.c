/*
 * statements.c: running dasa's fixed statements and reading their results.
 *
 * A statement is prepared once per session, on first use, after the schema
 * check (schema.c) has passed, and checked then against the result column
 * names it declares, so that code reading a column by name can never read
 * another. Plans are generic and saved; the plan cache replans by itself
 * when the extension's tables are dropped and created again.
 */
#include "storage/storage.h"

#include "jit/jit.h"
#include "optimizer/cost.h"
#include "utils/builtins.h"
#include "utils/plancache.h"

static int
count_args(const DasaStatement *s)
{
	int			n = 0;

	while (n < DASA_MAX_STATEMENT_ARGS && OidIsValid(s->args[n]))
		n++;
	return n;
}

/* The prepared statement must return exactly the columns it declares. */
static void
check_columns(const DasaStatement *s, SPIPlanPtr plan)
{
	CachedPlanSource *source = linitial(SPI_plan_get_plan_sources(plan));
	TupleDesc	desc = source->resultDesc;
	int			natts = desc ? desc->natts : 0;
	int			declared = 0;

	while (declared < DASA_MAX_STATEMENT_COLUMNS && s->columns[declared] != NULL)
		declared++;
	if (declared != natts)
		elog(ERROR, "statement returns %d columns but declares %d: %s", natts, declared, s->sql);
	for (int i = 0; i < natts; i++)
		if (strcmp(NameStr(TupleDescAttr(desc, i)->attname), s->columns[i]) != 0)
			elog(ERROR, "statement column %d is \"%s\", declared \"%s\": %s", i + 1,
				 NameStr(TupleDescAttr(desc, i)->attname), s->columns[i], s->sql);
}

/*
 * Prepare s once and keep the plan for the life of the backend. Always the
 * generic plan: these statements look rows up by key, so planning each call
 * for its parameters would buy nothing.
 */
static void
prepare(DasaStatement *s)
{
	SPIPlanPtr	plan;

	dasa_require_schema(s->since);
	plan = SPI_prepare_cursor(s->sql, count_args(s), s->args, CURSOR_OPT_GENERIC_PLAN);
	if (plan == NULL)
		elog(ERROR, "SPI_prepare failed for \"%s\": %s", s->sql,
			 SPI_result_code_string(SPI_result));
	check_columns(s, plan);
	if (SPI_keepplan(plan) != 0)
		elog(ERROR, "SPI_keepplan failed for \"%s\"", s->sql);
	s->plan = plan;
}

/*
 * Run statement s (connected to SPI). An error from SPI is a bug.
 *
 * A saved plan lives as long as the session and is rebuilt only when the
 * table's statistics change. One built while the table was tiny would scan
 * it sequentially ever after (and, costed as disabled, be JIT-compiled on
 * every run), so plans are built with sequential scans and JIT off: every
 * statement here has an index that fits. The planner reads these two
 * settings only while it plans, and plans are almost always reused, so the
 * variables are flipped directly for the call instead of going through a
 * GUC nesting level on every execution.
 */
DasaRows
dasa_run(DasaStatement *s, Datum *args, const char *nulls, long limit)
{
	bool		saved_seqscan = enable_seqscan;
	bool		saved_jit = jit_enabled;
	DasaRows	rows = {.statement = s};
	int			ret;

	if (s->plan == NULL)
		prepare(s);
	enable_seqscan = false;
	jit_enabled = false;
	PG_TRY();
	{
		ret = SPI_execute_plan(s->plan, args, nulls, false, limit);
	}
	PG_FINALLY();
	{
		enable_seqscan = saved_seqscan;
		jit_enabled = saved_jit;
	}
	PG_END_TRY();
	if (ret < 0)
		elog(ERROR, "SPI_execute_plan returned %s for \"%s\"", SPI_result_code_string(ret), s->sql);
	rows.table = SPI_tuptable;
	rows.n = SPI_processed;
	return rows;
}

/* The attribute number of a declared result column. */
int
dasa_column(const DasaRows *rows, const char *name)
{
	for (int i = 0; i < DASA_MAX_STATEMENT_COLUMNS && rows->statement->columns[i]; i++)
		if (strcmp(rows->statement->columns[i], name) == 0)
			return i + 1;
	elog(ERROR, "statement declares no column \"%s\": %s", name, rows->statement->sql);
}

Datum
dasa_get(const DasaRows *rows, uint64 row, const char *column, bool *isnull)
{
	Assert(row < rows->n);
	return SPI_getbinval(rows->table->vals[row], rows->table->tupdesc,
						 dasa_column(rows, column), isnull);
}

bool
dasa_get_bool(const DasaRows *rows, uint64 row, const char *column)
{
	bool		isnull;
	Datum		d = dasa_get(rows, row, column, &isnull);

	return !isnull && DatumGetBool(d);
}

int32
dasa_get_int32(const DasaRows *rows, uint64 row, const char *column)
{
	bool		isnull;
	Datum		d = dasa_get(rows, row, column, &isnull);

	return isnull ? 0 : DatumGetInt32(d);
}

int64
dasa_get_int64(const DasaRows *rows, uint64 row, const char *column)
{
	bool		isnull;
	Datum		d = dasa_get(rows, row, column, &isnull);

	return isnull ? 0 : DatumGetInt64(d);
}

double
dasa_get_float8(const DasaRows *rows, uint64 row, const char *column)
{
	bool		isnull;
	Datum		d = dasa_get(rows, row, column, &isnull);

	return isnull ? 0 : DatumGetFloat8(d);
}

/* A text column as a C string (palloc'd); NULL for SQL NULL. */
char *
dasa_get_text(const DasaRows *rows, uint64 row, const char *column)
{
	bool		isnull;
	Datum		d = dasa_get(rows, row, column, &isnull);

	return isnull ? NULL : TextDatumGetCString(d);
}

TimestampTz
dasa_get_timestamp(const DasaRows *rows, uint64 row, const char *column)
{
	bool		isnull;
	Datum		d = dasa_get(rows, row, column, &isnull);

	return isnull ? 0 : DatumGetTimestampTz(d);
}

/* A jsonb column copied into the current memory context; NULL for SQL NULL. */
Jsonb *
dasa_get_jsonb_copy(const DasaRows *rows, uint64 row, const char *column)
{
	bool		isnull;
	Datum		d = dasa_get(rows, row, column, &isnull);

	return isnull ? NULL : DatumGetJsonbPCopy(d);
}
