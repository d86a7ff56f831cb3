/*
 * procedures.c: a registration's procedure, named by its signature.
 *
 * dasa.functions keeps the procedure as schema-qualified text, not as an
 * oid: a dump restores procedures with new oids, and pg_upgrade refuses
 * tables with regprocedure columns. The text is resolved when the procedure
 * is used, through a per-backend cache that any change to pg_proc or
 * pg_namespace empties, so a function dropped and created again (or
 * restored) is found again and a dropped one is not found.
 */
#include "core/core.h"

#include "catalog/pg_proc.h"
#include "lib/stringinfo.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/memutils.h"
#include "utils/regproc.h"
#include "utils/syscache.h"

/* Longer signatures are resolved every time, not cached. */
#define CACHED_SIGNATURE_BYTES (2 * NAMEDATALEN + 32)

typedef struct ResolvedProcedure
{
	char		signature[CACHED_SIGNATURE_BYTES];
	Oid			proc;
} ResolvedProcedure;

static HTAB *resolved = NULL;

static void
forget_resolved(Datum arg, int cacheid, uint32 hashvalue)
{
	HASH_SEQ_STATUS seq;
	ResolvedProcedure *entry;

	if (resolved == NULL)
		return;
	hash_seq_init(&seq, resolved);
	while ((entry = hash_seq_search(&seq)) != NULL)
		(void) hash_search(resolved, entry->signature, HASH_REMOVE, NULL);
}

static HTAB *
resolved_cache(void)
{
	HASHCTL		ctl = {0};

	if (resolved != NULL)
		return resolved;
	ctl.keysize = CACHED_SIGNATURE_BYTES;
	ctl.entrysize = sizeof(ResolvedProcedure);
	ctl.hcxt = TopMemoryContext;
	resolved = hash_create("dasa resolved procedures", 64, &ctl,
						   HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);
	CacheRegisterSyscacheCallback(PROCOID, forget_resolved, (Datum) 0);
	CacheRegisterSyscacheCallback(NAMESPACEOID, forget_resolved, (Datum) 0);
	return resolved;
}

/* The procedure a signature names now; InvalidOid if there is none. */
static Oid
lookup_signature(const char *signature)
{
	LOCAL_FCINFO(fcinfo, 1);
	Datum		result;

	InitFunctionCallInfoData(*fcinfo, NULL, 1, InvalidOid, NULL, NULL);
	fcinfo->args[0].value = CStringGetTextDatum(signature);
	fcinfo->args[0].isnull = false;
	result = to_regprocedure(fcinfo);
	return fcinfo->isnull ? InvalidOid : DatumGetObjectId(result);
}

/* The signature dasa.functions stores for proc: "schema.name(argtype, ...)". */
char *
dasa_procedure_signature(Oid proc)
{
	HeapTuple	tup = SearchSysCache1(PROCOID, ObjectIdGetDatum(proc));
	Form_pg_proc form;
	StringInfoData buf;

	if (!HeapTupleIsValid(tup))
		elog(ERROR, "cache lookup failed for function %u", proc);
	form = (Form_pg_proc) GETSTRUCT(tup);
	initStringInfo(&buf);
	appendStringInfo(&buf, "%s(", quote_qualified_identifier(get_namespace_name(form->pronamespace),
															 NameStr(form->proname)));
	for (int i = 0; i < form->pronargs; i++)
		appendStringInfo(&buf, "%s%s", i > 0 ? "," : "", format_type_be(form->proargtypes.values[i]));
	appendStringInfoChar(&buf, ')');
	ReleaseSysCache(tup);
	return buf.data;
}

/* The procedure signature names; InvalidOid if it no longer exists. */
Oid
dasa_procedure_resolve(const char *signature)
{
	ResolvedProcedure *entry;
	bool		found;
	Oid			proc;

	if (strlen(signature) >= CACHED_SIGNATURE_BYTES)
		return lookup_signature(signature);
	entry = hash_search(resolved_cache(), signature, HASH_FIND, NULL);
	if (entry != NULL)
		return entry->proc;
	proc = lookup_signature(signature);
	entry = hash_search(resolved_cache(), signature, HASH_ENTER, &found);
	entry->proc = proc;
	return proc;
}
