/*
 * dasa.c: module entry point.
 *
 * Only _PG_init lives here: it refuses to load outside
 * shared_preload_libraries, then lets every other file install its part.
 */
#include "runtime/runtime.h"

#include "miscadmin.h"
#include "utils/elog.h"

PG_MODULE_MAGIC;

void		_PG_init(void);

/* Load-time set-up; dasa needs shared memory and a launcher, so preload only. */
void
_PG_init(void)
{
	if (IsBinaryUpgrade)
		return;

	if (!process_shared_preload_libraries_in_progress)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("dasa must be loaded via shared_preload_libraries"),
				 errdetail("dasa needs shared memory and background workers, which only a preloaded library can set up."),
				 errhint("Add dasa to shared_preload_libraries in postgresql.conf and restart the server.")));

	dasa_define_settings();
	dasa_shmem_install_hooks();
	dasa_install_ddl_guard();
	dasa_register_launcher();
}
