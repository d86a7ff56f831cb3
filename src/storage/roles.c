/*
 * roles.c: whose privileges dasa's code runs with, and who may see what.
 *
 * dasa's own writes run as the extension owner (who owns the tables); an
 * invocation runs as the role that invoked it. Switching marks the change
 * as local, so the code running meanwhile cannot SET ROLE its way back
 * out; an error unwinding the (sub)transaction restores the caller by
 * itself. A promise is visible to its owner and to roles with the owner's
 * privileges, dasa_admin and superusers; to anybody else it does not exist.
 */
#include "storage/storage.h"

#include "access/htup_details.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/syscache.h"

/* The role that owns dasa's tables (whoever ran CREATE EXTENSION). */
Oid
dasa_extension_owner(void)
{
	Oid			relid = get_relname_relid("promises", get_namespace_oid("dasa", false));
	HeapTuple	tup;
	Oid			owner;

	tup = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));
	if (!HeapTupleIsValid(tup))
		elog(ERROR, "dasa.promises is missing");
	owner = ((Form_pg_class) GETSTRUCT(tup))->relowner;
	ReleaseSysCache(tup);
	return owner;
}

/* Run as role until dasa_restore_user; save receives who ran before. */
void
dasa_switch_user(Oid role, DasaUserSave *save)
{
	GetUserIdAndSecContext(&save->userid, &save->sec_context);
	SetUserIdAndSecContext(role, save->sec_context | SECURITY_LOCAL_USERID_CHANGE);
}

void
dasa_restore_user(const DasaUserSave *save)
{
	SetUserIdAndSecContext(save->userid, save->sec_context);
}

/*
 * May role see and settle promises owned by owner? Its own, those of roles
 * whose privileges it has (so an approval role granted membership in an
 * application role settles that role's promises), and all of them for
 * members of dasa_admin and superusers.
 */
bool
dasa_may_access(Oid role, Oid owner)
{
	Oid			admin;

	if (role == owner || has_privs_of_role(role, owner))
		return true;
	admin = get_role_oid("dasa_admin", true);
	return OidIsValid(admin) && has_privs_of_role(role, admin);
}

/*
 * Error (42501) unless caller may change what the row that lock (one text
 * argument: name) locks belongs to: its owner (column "owner") or a
 * superuser. message has two %s: the name and the owner's role.
 */
void
dasa_check_changer(DasaStatement *lock, const char *name, Oid caller, const char *message,
				   const char *hint)
{
	Datum		args[1] = {CStringGetTextDatum(name)};
	DasaRows	rows = dasa_run(lock, args, NULL, 1);
	bool		isnull;
	Oid			owner;
	const char *owner_name;

	if (rows.n == 0)
		return;
	owner = DatumGetObjectId(dasa_get(&rows, 0, "owner", &isnull));
	if (owner == caller || superuser_arg(caller))
		return;
	owner_name = GetUserNameFromId(owner, true);
	ereport(ERROR,
			(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			 errmsg_internal(message, name, owner_name ? owner_name : "(dropped)"),
			 errhint("%s", hint)));
}
