/*
 * storage.h: how dasa reaches its tables.
 *
 * Every fixed statement is a DasaStatement declared once, next to the code
 * that owns it, with its SQL, argument types and result column names; it is
 * prepared on first use, once the schema check has passed, and its results
 * are read by column name. Also here: the schema-version check and whose
 * privileges dasa's writes run with.
 */
#ifndef DASA_STORAGE_H
#define DASA_STORAGE_H

#include "dasa.h"

#include "access/htup.h"
#include "executor/spi.h"
#include "nodes/pg_list.h"

#define DASA_MAX_STATEMENT_ARGS 16
#define DASA_MAX_STATEMENT_COLUMNS 24

/* One fixed statement. args ends at the first InvalidOid, columns at the first NULL. */
typedef struct DasaStatement
{
	const char *since;			/* version that introduced what it uses; NULL: DASA_SCHEMA_OLDEST_FIT */
	const char *sql;
	Oid			args[DASA_MAX_STATEMENT_ARGS];
	const char *columns[DASA_MAX_STATEMENT_COLUMNS];
	SPIPlanPtr	plan;			/* prepared on first use, kept for the session */
} DasaStatement;

/* The rows a statement returned (valid until SPI_finish). */
typedef struct DasaRows
{
	const DasaStatement *statement;
	SPITupleTable *table;
	uint64		n;
} DasaRows;

/* statements.c */
extern DasaRows dasa_run(DasaStatement *s, Datum *args, const char *nulls, long limit);
extern int	dasa_column(const DasaRows *rows, const char *name);
extern Datum dasa_get(const DasaRows *rows, uint64 row, const char *column, bool *isnull);
extern bool dasa_get_bool(const DasaRows *rows, uint64 row, const char *column);
extern int32 dasa_get_int32(const DasaRows *rows, uint64 row, const char *column);
extern int64 dasa_get_int64(const DasaRows *rows, uint64 row, const char *column);
extern double dasa_get_float8(const DasaRows *rows, uint64 row, const char *column);
extern char *dasa_get_text(const DasaRows *rows, uint64 row, const char *column);
extern TimestampTz dasa_get_timestamp(const DasaRows *rows, uint64 row, const char *column);
extern Jsonb *dasa_get_jsonb_copy(const DasaRows *rows, uint64 row, const char *column);

/* arrays.c: statement arguments built from C arrays and lists */
extern Datum dasa_text_array(char **items, int n);
extern Datum dasa_text_array_of_list(List *items);
extern Datum dasa_nullable_text_array_of_list(List *items);
extern Datum dasa_jsonb_array(Jsonb **items, int n);
extern Datum dasa_int4_array(int *items, int n);
extern Datum dasa_int8_array(int64 *items, int n);
extern Datum dasa_nullable_text_array(char **items, int n);
extern Datum dasa_timestamptz_array(TimestampTz *items, int n);
extern Datum dasa_oid_array(Oid *items, int n);
extern Datum dasa_bool_array(bool *items, int n);

/* schema.c: is the installed SQL the version this library works with? */
typedef enum DasaSchema
{
	DASA_SCHEMA_ABSENT,			/* no extension in this database */
	DASA_SCHEMA_OTHER,			/* installed at another version */
	DASA_SCHEMA_CURRENT
} DasaSchema;

extern DasaSchema dasa_schema(void);
extern const char *dasa_installed_version(void);
extern bool dasa_schema_has(const char *since);
extern void dasa_require_schema(const char *since);

/* roles.c: whose privileges code runs with */
typedef struct DasaUserSave
{
	Oid			userid;
	int			sec_context;
} DasaUserSave;

extern Oid	dasa_extension_owner(void);
extern void dasa_switch_user(Oid role, DasaUserSave *save);
extern void dasa_restore_user(const DasaUserSave *save);
extern bool dasa_may_access(Oid role, Oid owner);
extern void dasa_check_changer(DasaStatement *lock, const char *name, Oid caller,
							   const char *message, const char *hint);

#endif							/* DASA_STORAGE_H */
