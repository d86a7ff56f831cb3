/*
 * crash_record.c: which attempt an executor was running when its process
 * died, kept where a crash cannot erase it.
 *
 * Each executor maps a small file of its own (pg_dasa/running.<db>.<n> in
 * the data directory) and writes the id of the task it is about to run
 * before each attempt, clearing it after. A crash of the process does not
 * lose the page cache, so when an executor starts and finds an id there,
 * that attempt died with its process: it is counted as a failed attempt of
 * that invocation alone (core/tasks.c), without a commit per attempt. When
 * the postmaster stops every process after another one crashed, or for an
 * immediate shutdown (SIGQUIT), the executor clears its record first: only
 * the process that crashed, or was killed, is blamed.
 */
#include "runtime/runtime.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "miscadmin.h"
#include "port/atomics.h"

#define RECORD_DIR "pg_dasa"
#define RECORD_BYTES 4096

typedef struct CrashRecord
{
	pg_atomic_uint32 length;	/* 0: no attempt running */
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
	pg_write_barrier();
	pg_atomic_write_u32(&record->length, len);
}

/* The attempt ended (whatever its outcome): nothing to blame. */
void
dasa_crash_record_clear(void)
{
	pg_atomic_write_u32(&record->length, 0);
}

/* The task whose attempt died with the previous process here, if any (palloc'd; NULL if none). */
char *
dasa_crash_record_take(void)
{
	uint32		len = pg_atomic_read_u32(&record->length);
	char	   *id;

	if (len == 0 || len > DASA_MAX_ID_BYTES)
		return NULL;
	pg_read_barrier();
	id = pnstrdup(record->task_id, len);
	return id;
}
