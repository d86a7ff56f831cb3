/*
 * spi_plan.c: saved SPI plans for dasa's fixed statements.
 *
 * Hot paths prepare each statement once per backend. The plan cache replans
 * by itself when the extension's tables are dropped and created again.
 */
#include "dasa.h"

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

/* Run a saved plan; anything but the expected kind of result is a bug. */
void
dasa_execute(SPIPlanPtr plan, Datum *values, const char *nulls, int expected, long limit)
{
	int			ret = SPI_execute_plan(plan, values, nulls, false, limit);

	if (ret != expected)
		elog(ERROR, "SPI_execute_plan returned %s", SPI_result_code_string(ret));
}
