/*
 * isolation.c: nothing one invocation leaves in an executor's session is
 * seen by the next.
 *
 * Executors run every role's invocations one after another in one session.
 * After each attempt, whatever it succeeded or not, the session state user
 * code can leave behind is cleared: session advisory locks, prepared
 * statements, open cursors (WITH HOLD or not) and the sequence values
 * currval/lastval remember (LISTEN needs no clearing: PostgreSQL refuses
 * it in background processes). Settings are undone by the
 * attempt's GUC nesting level (attempt.c). Temporary objects are refused:
 * an attempt that created any fails and is rolled back, so none survives
 * it (a temporary table with a trigger would otherwise run another role's
 * code as the next invocation's role).
 */
#include "runtime/runtime.h"

#include "catalog/namespace.h"
#include "commands/prepare.h"
#include "commands/sequence.h"
#include "storage/lock.h"
#include "utils/portal.h"

/* Did the attempt that just ran create the session's temporary schema (and so temporary objects)? */
bool
dasa_attempt_used_temp_objects(void)
{
	Oid			temp;
	Oid			temp_toast;

	/*
	 * An attempt that creates temporary objects is rolled back, which also
	 * forgets the temporary schema; so if it is known now, this attempt
	 * made it.
	 */
	GetTempNamespaceState(&temp, &temp_toast);
	return OidIsValid(temp);
}

/* Clear the session state an attempt may leave behind. Inside the executor's transaction. */
void
dasa_reset_session_state(void)
{
	LockReleaseSession(USER_LOCKMETHOD);
	DropAllPreparedStatements();
	PortalHashTableDeleteAll();
	ResetSequenceCaches();
}
