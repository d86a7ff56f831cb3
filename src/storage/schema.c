/*
 * schema.c: the one check that the installed SQL objects fit this library.
 *
 * After a package upgrade the library may be newer than the SQL objects
 * until ALTER EXTENSION dasa UPDATE runs. A statement declares the version
 * that introduced what it uses (most fit the last few versions) and is prepared
 * only once the installed version has it; background processes ask first
 * and stay idle until the update, user calls get a clear error. The
 * installed version is read once per transaction.
 */
#include "storage/storage.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "catalog/indexing.h"
#include "catalog/pg_extension.h"
#include "storage/proc.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/rel.h"

static LocalTransactionId checked_in = InvalidLocalTransactionId;
static char installed_version[NAMEDATALEN];	/* "" when not installed */

/* "major.minor.patch" as one comparable number; -1 if it is not one. */
static int
version_number(const char *version)
{
	int			major, minor, patch;

	if (sscanf(version, "%d.%d.%d", &major, &minor, &patch) != 3)
		return -1;
	return major * 10000 + minor * 100 + patch;
}

/* The installed version of dasa into installed_version; false if not installed. */
static bool
read_installed_version(void)
{
	Relation	rel = table_open(ExtensionRelationId, AccessShareLock);
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tup;
	bool		found = false;

	ScanKeyInit(&key, Anum_pg_extension_extname, BTEqualStrategyNumber, F_NAMEEQ,
				CStringGetDatum("dasa"));
	scan = systable_beginscan(rel, ExtensionNameIndexId, true, NULL, 1, &key);
	tup = systable_getnext(scan);
	if (HeapTupleIsValid(tup))
	{
		bool		isnull;
		Datum		v = heap_getattr(tup, Anum_pg_extension_extversion,
									 RelationGetDescr(rel), &isnull);

		strlcpy(installed_version, isnull ? "?" : TextDatumGetCString(v), sizeof(installed_version));
		found = true;
	}
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	return found;
}

/* The installed version of dasa ("" if none), read once per transaction. */
static const char *
installed(void)
{
	if (checked_in != MyProc->lxid || checked_in == InvalidLocalTransactionId)
	{
		if (!read_installed_version())
			installed_version[0] = '\0';
		checked_in = MyProc->lxid;
	}
	return installed_version;
}

/* The version of dasa installed here ("" if none), as of this transaction. */
const char *
dasa_installed_version(void)
{
	return installed();
}

/* Are the SQL objects of version since installed here (this or a later version)? */
bool
dasa_schema_has(const char *since)
{
	return version_number(installed()) >= version_number(since);
}

/* Is dasa installed here, and at the version this library works with? */
DasaSchema
dasa_schema(void)
{
	const char *version = installed();

	if (version[0] == '\0')
		return DASA_SCHEMA_ABSENT;
	return strcmp(version, DASA_SCHEMA_VERSION) == 0 ? DASA_SCHEMA_CURRENT : DASA_SCHEMA_OTHER;
}

/*
 * Error unless the installed SQL objects have what a statement needs: the
 * objects of version since (NULL: DASA_SCHEMA_OLDEST_FIT), and none newer
 * than this library knows.
 */
void
dasa_require_schema(const char *since)
{
	const char *version = installed();
	int			have = version_number(version);

	if (version[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("extension \"dasa\" is not installed in this database"),
				 errhint("Run CREATE EXTENSION dasa.")));
	if (have < version_number(since ? since : DASA_SCHEMA_OLDEST_FIT) ||
		have > version_number(DASA_SCHEMA_VERSION))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("extension \"dasa\" is installed at version %s, but its library works with version %s",
						version, DASA_SCHEMA_VERSION),
				 errdetail("The library and the extension's SQL objects in this database were not upgraded together."),
				 errhint("Run ALTER EXTENSION dasa UPDATE, or install the library that matches version %s.", version)));
}
