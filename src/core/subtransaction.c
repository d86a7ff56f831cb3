/*
 * subtransaction.c: running one step so that its error undoes its own
 * writes only, and the caller decides what the error means.
 */
#include "core/core.h"

#include "access/xact.h"
#include "utils/memutils.h"
#include "utils/resowner.h"

/* Run step(arg) in a subtransaction: NULL if it went through, else its error (the subtransaction rolled back). */
ErrorData *
dasa_try(void (*step) (void *arg), void *arg)
{
	MemoryContext cxt = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;
	ErrorData  *volatile failure = NULL;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(cxt);
	PG_TRY();
	{
		step(arg);
		ReleaseCurrentSubTransaction();
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(cxt);
		failure = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
	}
	PG_END_TRY();
	MemoryContextSwitchTo(cxt);
	CurrentResourceOwner = owner;
	return failure;
}
