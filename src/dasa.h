/*
 * dasa.h: what every layer of dasa shares: limits, SQLSTATEs and settings.
 *
 * The source tree is layered, and includes run one way:
 *   api/ (SQL-callable wrappers), runtime/ (background processes)
 *     -> core/ (the kernel: every write to promises, tasks and callbacks)
 *       -> storage/ (fixed statements, schema check, roles), ipc/ (shared
 *          memory hints and commit-time wake-ups)
 * Each folder has one header; this one sits under all of them.
 */
#ifndef DASA_H
#define DASA_H

#include "postgres.h"

#include "datatype/timestamp.h"
#include "fmgr.h"
#include "utils/jsonb.h"
#include "utils/timestamp.h"

/* The version of the SQL objects this library works with. */
#define DASA_SCHEMA_VERSION "0.11.0"

/*
 * The oldest installed version whose objects still fit every statement not
 * marked otherwise: sessions (an await, say) keep working while an
 * ALTER EXTENSION dasa UPDATE from it is pending or running.
 */
#define DASA_SCHEMA_OLDEST_FIT "0.4.0"

/* SQLSTATEs of dasa's own outcomes (class DA); documented in README.md. */
#define ERRCODE_DASA_PROMISE_REJECTED	MAKE_SQLSTATE('D','A','0','0','1')
#define ERRCODE_DASA_PROMISE_CANCELED	MAKE_SQLSTATE('D','A','0','0','2')
#define ERRCODE_DASA_PROMISE_TIMEDOUT	MAKE_SQLSTATE('D','A','0','0','3')
#define ERRCODE_DASA_AWAIT_TIMEOUT		MAKE_SQLSTATE('D','A','0','0','4')
#define ERRCODE_DASA_NONDETERMINISTIC	MAKE_SQLSTATE('D','A','0','0','5')
#define ERRCODE_DASA_AWAITS_ITSELF		MAKE_SQLSTATE('D','A','0','0','6')
#define ERRCODE_DASA_ATTEMPT_CRASHED	MAKE_SQLSTATE('D','A','0','0','7')
#define ERRCODE_DASA_STALE_CLAIM		MAKE_SQLSTATE('D','A','0','0','8')
#define ERRCODE_DASA_CLAIM_LOST			MAKE_SQLSTATE('D','A','0','0','9')
#define ERRCODE_DASA_EXTERNAL_FAILURE	MAKE_SQLSTATE('D','A','0','1','1')
#define ERRCODE_DASA_SUSPENDED			MAKE_SQLSTATE('D','A','0','1','0')

#define DASA_MAX_ID_BYTES 1024
#define DASA_MAX_TIMEOUT_YEARS 1000
#define DASA_MAX_FUNCTION_NAME 128
#define DASA_MAX_EXECUTORS 16
#define DASA_TIMER_TAG "resonate:timer"

/* settings.c: the dasa.* settings, read directly by the files that use them */
extern int	dasa_launcher_naptime_ms;
extern int	dasa_sweep_interval_ms;
extern int	dasa_await_recheck_ms;
extern int	dasa_max_payload_kb;
extern int	dasa_max_databases;
extern int	dasa_executors_per_database;
extern int	dasa_executor_batch_size;
extern int	dasa_executor_poll_ms;
extern int	dasa_retention_s;
extern int	dasa_resonate_retry_ms;
extern void dasa_define_settings(void);

#endif							/* DASA_H */
