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
