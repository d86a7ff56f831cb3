/*
 * spi_plan.c: saved SPI plans for dasa's fixed statements.
 *
 * Hot paths prepare each statement once per backend. The plan cache replans
 * by itself when the extension's tables are dropped and created again.
 */
#include "dasa.h"

#include "jit/jit.h"
#include "optimizer/cost.h"

/*
 * Prepare sql once and keep the plan for the life of the backend. Always the
 * generic plan: these statements look rows up by key, so planning each call
 * for its parameters would buy nothing.
 */
SPIPlanPtr
dasa_prepare_saved(const char *sql, int nargs, Oid *argtypes)
{
	SPIPlanPtr	plan = SPI_prepare_cursor(sql, nargs, argtypes, CURSOR_OPT_GENERIC_PLAN);

	if (plan == NULL)
		elog(ERROR, "SPI_prepare failed for \"%s\": %s", sql,
			 SPI_result_code_string(SPI_result));
	if (SPI_keepplan(plan) != 0)
		elog(ERROR, "SPI_keepplan failed for \"%s\"", sql);
	return plan;
}

/*
 * Run a saved plan; anything but the expected kind of result is a bug.
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
void
dasa_execute(SPIPlanPtr plan, Datum *values, const char *nulls, int expected, long limit)
{
	bool		saved_seqscan = enable_seqscan;
	bool		saved_jit = jit_enabled;
	int			ret;

	enable_seqscan = false;
	jit_enabled = false;
	PG_TRY();
	{
		ret = SPI_execute_plan(plan, values, nulls, false, limit);
	}
	PG_FINALLY();
	{
		enable_seqscan = saved_seqscan;
		jit_enabled = saved_jit;
	}
	PG_END_TRY();
	if (ret != expected)
		elog(ERROR, "SPI_execute_plan returned %s", SPI_result_code_string(ret));
}
