/*
 * arrays.c: statement arguments made from C arrays and lists.
 *
 * dasa's set-based statements take their sets as SQL arrays (unnest on the
 * SQL side); these build them. Nothing here touches a table.
 */
#include "storage/storage.h"

#include "catalog/pg_type.h"
#include "utils/array.h"
#include "utils/builtins.h"

Datum
dasa_text_array(char **items, int n)
{
	Datum	   *elems = palloc(Max(n, 1) * sizeof(Datum));

	for (int i = 0; i < n; i++)
		elems[i] = CStringGetTextDatum(items[i]);
	return PointerGetDatum(construct_array(elems, n, TEXTOID, -1, false, TYPALIGN_INT));
}

/* The C strings of a List, as an array. */
static char **
strings_of_list(List *items)
{
	char	  **strings = palloc(Max(list_length(items), 1) * sizeof(char *));
	ListCell   *lc;

	foreach(lc, items)
		strings[foreach_current_index(lc)] = (char *) lfirst(lc);
	return strings;
}

/* text[] of a List of C strings. */
Datum
dasa_text_array_of_list(List *items)
{
	return dasa_text_array(strings_of_list(items), list_length(items));
}

/* text[] of a List of C strings, a NULL one an SQL NULL element. */
Datum
dasa_nullable_text_array_of_list(List *items)
{
	return dasa_nullable_text_array(strings_of_list(items), list_length(items));
}

/* jsonb[]; a NULL pointer is an SQL NULL element. */
Datum
dasa_jsonb_array(Jsonb **items, int n)
{
	Datum	   *elems = palloc(Max(n, 1) * sizeof(Datum));
	bool	   *nulls = palloc(Max(n, 1) * sizeof(bool));
	int			dims[1] = {n};
	int			lbs[1] = {1};

	for (int i = 0; i < n; i++)
	{
		elems[i] = PointerGetDatum(items[i]);
		nulls[i] = (items[i] == NULL);
	}
	return PointerGetDatum(construct_md_array(elems, nulls, 1, dims, lbs, JSONBOID, -1,
											  false, TYPALIGN_INT));
}

Datum
dasa_int4_array(int *items, int n)
{
	Datum	   *elems = palloc(Max(n, 1) * sizeof(Datum));

	for (int i = 0; i < n; i++)
		elems[i] = Int32GetDatum(items[i]);
	return PointerGetDatum(construct_array(elems, n, INT4OID, sizeof(int32), true, TYPALIGN_INT));
}

Datum
dasa_int8_array(int64 *items, int n)
{
	Datum	   *elems = palloc(Max(n, 1) * sizeof(Datum));

	for (int i = 0; i < n; i++)
		elems[i] = Int64GetDatum(items[i]);
	return PointerGetDatum(construct_array(elems, n, INT8OID, sizeof(int64), FLOAT8PASSBYVAL,
										   TYPALIGN_DOUBLE));
}

/* text[]; a NULL pointer is an SQL NULL element. */
Datum
dasa_nullable_text_array(char **items, int n)
{
	Datum	   *elems = palloc(Max(n, 1) * sizeof(Datum));
	bool	   *nulls = palloc(Max(n, 1) * sizeof(bool));
	int			dims[1] = {n};
	int			lbs[1] = {1};

	for (int i = 0; i < n; i++)
	{
		elems[i] = items[i] ? CStringGetTextDatum(items[i]) : (Datum) 0;
		nulls[i] = (items[i] == NULL);
	}
	return PointerGetDatum(construct_md_array(elems, nulls, 1, dims, lbs, TEXTOID, -1,
											  false, TYPALIGN_INT));
}

Datum
dasa_timestamptz_array(TimestampTz *items, int n)
{
	Datum	   *elems = palloc(Max(n, 1) * sizeof(Datum));

	for (int i = 0; i < n; i++)
		elems[i] = TimestampTzGetDatum(items[i]);
	return PointerGetDatum(construct_array(elems, n, TIMESTAMPTZOID, sizeof(TimestampTz),
										   FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
}

Datum
dasa_oid_array(Oid *items, int n)
{
	Datum	   *elems = palloc(Max(n, 1) * sizeof(Datum));

	for (int i = 0; i < n; i++)
		elems[i] = ObjectIdGetDatum(items[i]);
	return PointerGetDatum(construct_array(elems, n, OIDOID, sizeof(Oid), true, TYPALIGN_INT));
}

Datum
dasa_bool_array(bool *items, int n)
{
	Datum	   *elems = palloc(Max(n, 1) * sizeof(Datum));

	for (int i = 0; i < n; i++)
		elems[i] = BoolGetDatum(items[i]);
	return PointerGetDatum(construct_array(elems, n, BOOLOID, 1, true, TYPALIGN_CHAR));
}
