/*
 * crash_record.c: which attempt an executor was running when its process
 * died, kept where a crash cannot erase it.
 *
 * Each executor maps a small file of its own (pg_dasa/running.<db>.<n> in
 * the data directory) and writes the id of the task it is about to run
 * before each attempt, clearing it after. A crash of the process does not
 * lose the page cache, so when an executor starts and finds ids in its
 * database's records, those attempts died with their processes: each is
 * counted as a failed attempt of that invocation alone (core/tasks.c),
 * without a commit per attempt. When the postmaster stops every process
 * after another one crashed, or for an immediate shutdown (SIGQUIT), an
 * executor clears its record first, and so does an orderly exit: only the
 * process that crashed, or was killed, is blamed. An attempt that outlives
 * its timeout is ended by ending its process (attempt.c), marked here as
 * such and counted by the exiting executor itself (executor.c).
 */
#include "runtime/runtime.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "miscadmin.h"
#include "storage/fd.h"
#include "port/atomics.h"

#define RECORD_DIR "pg_dasa"
#define RECORD_BYTES 4096

typedef struct CrashRecord
{
	pg_atomic_uint32 length;	/* 0: no attempt running */
	volatile sig_atomic_t overran;	/* the executor ended it: it outlived its timeout */
	int64		version;
	char		task_id[DASA_MAX_ID_BYTES + 1];
} CrashRecord;

static CrashRecord *record = NULL;

/* SIGQUIT: the postmaster stops everything; this process did not crash. */
static void
quit_without_blame(SIGNAL_ARGS)
{
	if (record != NULL)
		pg_atomic_write_u32(&record->length, 0);
	_exit(2);
}

/* Map this executor's record; called once at start. */
void
dasa_crash_record_open(Oid dboid, int index)
{
	char		path[MAXPGPATH];
	int			fd;
	void	   *page;

	(void) mkdir(RECORD_DIR, S_IRWXU);
	snprintf(path, sizeof(path), "%s/running.%u.%d", RECORD_DIR, dboid, index);
	fd = open(path, O_RDWR | O_CREAT | PG_BINARY, S_IRUSR | S_IWUSR);
	if (fd < 0 || ftruncate(fd, RECORD_BYTES) != 0)
		ereport(ERROR, (errcode_for_file_access(), errmsg("could not open \"%s\": %m", path)));
	page = mmap(NULL, RECORD_BYTES, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	close(fd);
	if (page == MAP_FAILED)
		ereport(ERROR, (errcode_for_file_access(), errmsg("could not map \"%s\": %m", path)));
	record = (CrashRecord *) page;
	pqsignal(SIGQUIT, quit_without_blame);
}

/* The attempt of task starts now. */
void
dasa_crash_record_set(DasaTask *task)
{
	int			len = Min(strlen(task->id), DASA_MAX_ID_BYTES);

	memcpy(record->task_id, task->id, len);
	record->task_id[len] = '\0';
	record->version = task->version;
	record->overran = 0;
	pg_write_barrier();
	pg_atomic_write_u32(&record->length, len);
}

/* The attempt ended (whatever its outcome): nothing to blame. */
void
dasa_crash_record_clear(void)
{
	pg_atomic_write_u32(&record->length, 0);
}

/* The running attempt outlived its timeout and is being ended (safe in a signal handler). */
void
dasa_crash_record_mark_overran(void)
{
	if (record != NULL)
		record->overran = 1;
}

/* Take (and clear, atomically: one taker only) what rec names; NULL if nothing. */
static char *
take(CrashRecord *rec, bool *overran)
{
	uint32		len = pg_atomic_exchange_u32(&rec->length, 0);

	if (len == 0 || len > DASA_MAX_ID_BYTES)
		return NULL;
	pg_read_barrier();
	*overran = rec->overran != 0;
	return pnstrdup(rec->task_id, len);
}

/* This executor's own record: the attempt it is ending with, if any. */
char *
dasa_crash_record_take(bool *overran)
{
	return take(record, overran);
}

/*
 * A sibling executor that runs and has taken the records there were when
 * it started: what its record holds now is the attempt it runs.
 */
static bool
sibling_is_running(DasaDatabase *db, int index, int my_index)
{
	bool		running;

	if (index == my_index || index < 0 || index >= DASA_MAX_EXECUTORS)
		return false;
	LWLockAcquire(dasa_databases_lock(), LW_SHARED);
	running = db->executors[index].slot.pid != 0 && db->executors[index].counted;
	LWLockRelease(dasa_databases_lock());
	return running;
}

/*
 * Every record of the database's executors (this one's included, running
 * siblings' not) that names an attempt which died with its process; taken,
 * so each is counted once. Done by every executor as it starts, before it
 * claims anything: after a crash of the whole server, no executor runs the
 * culprit again before its crash is counted.
 */
List *
dasa_crash_records_take_all(DasaDatabase *db, int my_index)
{
	char		prefix[64];
	DIR		   *dir = AllocateDir(RECORD_DIR);
	struct dirent *de;
	List	   *ids = NIL;

	snprintf(prefix, sizeof(prefix), "running.%u.", db->dboid);
	while ((de = ReadDir(dir, RECORD_DIR)) != NULL)
	{
		char		path[MAXPGPATH];
		int			fd;
		void	   *page;
		bool		overran;
		char	   *id;
		struct stat st;

		if (strncmp(de->d_name, prefix, strlen(prefix)) != 0 ||
			sibling_is_running(db, atoi(de->d_name + strlen(prefix)), my_index))
			continue;
		snprintf(path, sizeof(path), "%s/%s", RECORD_DIR, de->d_name);
		if ((fd = open(path, O_RDWR | PG_BINARY, 0)) < 0)
			continue;
		if (fstat(fd, &st) != 0 || st.st_size < RECORD_BYTES)
		{
			close(fd);			/* a sibling is creating it: nothing in it yet */
			continue;
		}
		page = mmap(NULL, RECORD_BYTES, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		close(fd);
		if (page == MAP_FAILED)
			continue;
		if ((id = take((CrashRecord *) page, &overran)) != NULL)
			ids = lappend(ids, id);
		munmap(page, RECORD_BYTES);
	}
	FreeDir(dir);
	return ids;
}
