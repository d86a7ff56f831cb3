/*
 * claim_floor.c: where a claim of in-database tasks starts reading.
 *
 * The claim reads the index of pending tasks in run_at order. A finished
 * task leaves a dead entry behind, and those pile up at the low end until
 * vacuum removes them (or never, while an old snapshot holds them): a claim
 * reading from the start would step over every task finished since. So a
 * database keeps a floor, a time before which no pending task is due, and
 * claims read from there.
 *
 * A claim raises the floor to the first task it took (or to its own now if
 * it took none): everything before was finished, or is held by a claim
 * that runs it. Whoever makes a task pending lowers the floor to the task's
 * run_at once it commits (wakeup.c); whoever gives a task back unfinished
 * (a batch ending early, a rolled-back claim or lock) lowers it to that
 * task's run_at, or to 0. A claim's snapshot may predate a task whose
 * commit lowered the floor while the claim ran, so a raise goes no higher
 * than any lowering made since that claim read the floor. As a last resort
 * against a path nobody thought of, a claim reads from the start every few
 * seconds.
 */
#include "ipc/ipc.h"

#include "utils/timestamp.h"

/* A claim reads the whole index at least this often. */
#define FULL_WALK_INTERVAL_MS 5000

void
dasa_claim_floor_init(DasaClaimFloor *f)
{
	SpinLockInit(&f->lock);
	f->floor = 0;
	f->walked_at = 0;
	for (int i = 0; i < DASA_MAX_EXECUTORS; i++)
		f->claiming[i] = false;
}

static DasaClaimFloor *
my_floor(void)
{
	DasaDatabase *db = dasa_my_database();

	return db ? &db->claim_floor : NULL;
}

/* The floor for the claim executor claimer is about to make. */
TimestampTz
dasa_claim_floor_read(int claimer)
{
	DasaClaimFloor *f = my_floor();
	TimestampTz now = GetCurrentTimestamp();
	TimestampTz floor;

	if (f == NULL)
		return 0;
	SpinLockAcquire(&f->lock);
	if (now - f->walked_at >= (TimestampTz) FULL_WALK_INTERVAL_MS * 1000)
	{
		f->walked_at = now;
		f->floor = 0;
	}
	floor = f->floor;
	f->claiming[claimer] = true;
	f->lowered[claimer] = DT_NOEND;
	SpinLockRelease(&f->lock);
	return floor;
}

/* The floor as it is, for a look at the claim's plan (no claim follows). */
TimestampTz
dasa_claim_floor_peek(void)
{
	DasaClaimFloor *f = my_floor();
	TimestampTz floor;

	if (f == NULL)
		return 0;
	SpinLockAcquire(&f->lock);
	floor = f->floor;
	SpinLockRelease(&f->lock);
	return floor;
}

/* The claim of claimer found nothing pending and unheld before to: raise the floor. */
void
dasa_claim_floor_raise(int claimer, TimestampTz to)
{
	DasaClaimFloor *f = my_floor();

	if (f == NULL)
		return;
	SpinLockAcquire(&f->lock);
	if (f->claiming[claimer])
	{
		to = Min(to, f->lowered[claimer]);
		if (to > f->floor)
			f->floor = to;
		f->claiming[claimer] = false;
	}
	SpinLockRelease(&f->lock);
}

/* A task due at to is (or may be) pending: claims must read from there. */
void
dasa_claim_floor_lower(TimestampTz to)
{
	DasaClaimFloor *f = my_floor();

	if (f == NULL)
		return;
	SpinLockAcquire(&f->lock);
	if (to < f->floor)
		f->floor = to;
	for (int i = 0; i < DASA_MAX_EXECUTORS; i++)
		if (f->claiming[i] && to < f->lowered[i])
			f->lowered[i] = to;
	SpinLockRelease(&f->lock);
}
