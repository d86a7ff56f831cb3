/*
 * dasa_client.h: a small C client (on libpq) for dasa's external workers.
 *
 * A worker program connects under a worker name, LISTENs for its queue,
 * claims due tasks, runs them, and completes or fails each with the version
 * the claim returned (the fencing token). Claims are bound to the client's
 * session: if the connection goes, the server releases them within seconds
 * (as failed attempts), and a completion of a lost claim is refused with
 * DASA_ERR_STALE: drop that attempt's work, the task runs (ran) elsewhere.
 *
 *     dasa_client *c = dasa_client_connect("dbname=app", "mailer-1");
 *     dasa_client_listen(c, "mail");
 *     for (;;) {
 *         dasa_task *tasks; int n;
 *         if (dasa_client_claim(c, "mail", 10, 30000, &tasks, &n) == DASA_ERR_CONNECTION)
 *             { sleep(1); dasa_client_reconnect(c); continue; }
 *         for (int i = 0; i < n; i++)
 *             dasa_client_complete(c, tasks[i].id, tasks[i].version, "{\"sent\": true}");
 *         dasa_tasks_free(tasks, n);
 *         if (n == 0)
 *             dasa_client_wait_for_work(c, 5000);
 *     }
 *
 * All functions returning int return DASA_OK (0) or a negative DASA_ERR_*
 * code, unless said otherwise; dasa_client_error() then says why. A client
 * is not thread-safe: use one per thread. Strings are UTF-8; JSON is text.
 */
#ifndef DASA_CLIENT_H
#define DASA_CLIENT_H

#ifdef __cplusplus
extern "C"
{
#endif

typedef struct dasa_client dasa_client;

/* A claimed task; the strings belong to the array dasa_tasks_free() frees. */
typedef struct dasa_task
{
	char	   *id;				/* the task's (and its promise's) id */
	char	   *function;		/* the registered function's name */
	char	   *args;			/* the invocation's arguments, JSON text */
	int			attempt;		/* 1 on the first attempt */
	long long	version;		/* pass it to dasa_client_complete / _fail */
} dasa_task;

#define DASA_OK					0
#define DASA_ERR_CONNECTION		(-1)	/* not connected or the connection broke: dasa_client_reconnect() */
#define DASA_ERR_STALE			(-2)	/* SQLSTATE DA008: that claim is no longer held */
#define DASA_ERR_SERVER			(-3)	/* the server raised an error: dasa_client_sqlstate() */
#define DASA_ERR_USAGE			(-4)	/* an argument is invalid */
#define DASA_ERR_NOMEM			(-5)	/* out of memory */

/*
 * A client for worker name `worker` (unique per worker process; its claims
 * are bound to this client's session), connected to the libpq connection
 * string or URI dsn ("" for libpq's defaults and PG* environment). Returns
 * NULL only if out of memory or an argument is NULL or empty; check
 * dasa_client_connected(): a client that could not connect yet is usable
 * once dasa_client_reconnect() succeeds.
 */
extern dasa_client *dasa_client_connect(const char *dsn, const char *worker);

/* 1 when connected (as far as the client knows), else 0. */
extern int	dasa_client_connected(const dasa_client *c);

/* Drop the connection if any and connect again; LISTENs again for every queue listened. */
extern int	dasa_client_reconnect(dasa_client *c);

/*
 * LISTEN for queue's notifications, now and after each reconnect (a queue
 * is remembered even if the connection is down now: DASA_ERR_CONNECTION).
 */
extern int	dasa_client_listen(dasa_client *c, const char *queue);

/*
 * Claim up to max (1..1000) due tasks of queue with a lease of lease_ms
 * (at least 1000), bound to this session. On DASA_OK, *tasks is an array of
 * *ntasks tasks (NULL when none) to free with dasa_tasks_free().
 */
extern int	dasa_client_claim(dasa_client *c, const char *queue, int max, int lease_ms,
							  dasa_task **tasks, int *ntasks);

/*
 * Extend the leases of all of this worker's claims (and bind it to this
 * session); *held (if not NULL) gets how many tasks it holds.
 */
extern int	dasa_client_heartbeat(dasa_client *c, int *held);

/* Resolve the claimed task id (claimed at version) with value_json (NULL: no value, SQL NULL). */
extern int	dasa_client_complete(dasa_client *c, const char *id, long long version,
								 const char *value_json);

/* Resolve it with the JSON string whose content is text. */
extern int	dasa_client_complete_text(dasa_client *c, const char *id, long long version,
									  const char *text);

/*
 * The attempt failed, with error_json (an object; its "message" becomes the
 * attempt's message; NULL: none): retried by the function's policy when
 * retry, else its promise is rejected at once.
 */
extern int	dasa_client_fail(dasa_client *c, const char *id, long long version,
							 const char *error_json, int retry);

/*
 * Complete n claimed tasks in one round trip, tasks[i] with values_json[i]
 * (values_json NULL, or an element NULL: no value). Tasks whose claim was
 * lost are left alone; *completed (if not NULL) gets how many were
 * completed. Meant for handlers that run many tasks at once.
 */
extern int	dasa_client_complete_all(dasa_client *c, const dasa_task *tasks,
									 const char *const *values_json, int n, int *completed);

/* Give the claimed task back, due again at once, without spending an attempt (shutting down). */
extern int	dasa_client_release(dasa_client *c, const char *id, long long version);

/*
 * Work on the claimed task in this session (dasa.enter_task): what the
 * handler invokes through this client's connection (dasa_client_conn) are
 * the task's children, named "<id>.<n>" unless given an id, so a re-run
 * finds the children it started; completing, failing or releasing it ends
 * that.
 */
extern int	dasa_client_enter(dasa_client *c, const char *id, long long version);

/* The client's libpq connection (NULL when not connected), for the handler's own SQL. */
extern struct pg_conn *dasa_client_conn(const dasa_client *c);

/* The promise's state after the last successful complete or fail ("resolved", "pending", ...). */
extern const char *dasa_client_promise_state(const dasa_client *c);

/*
 * Wait up to timeout_ms (-1: no limit) for a notification of a listened
 * queue. Returns 1 when one came (or had come since the last call), 0 on
 * timeout or when a signal interrupted the wait, or a DASA_ERR_* code.
 */
extern int	dasa_client_wait_for_work(dasa_client *c, int timeout_ms);

/*
 * For a program's own poll loop: the connection's socket (-1 when not
 * connected) to poll for input, and, when it is readable, consume: returns
 * how many notifications of listened queues came since the last call (also
 * those that arrived during other calls: call it before sleeping), or a
 * DASA_ERR_* code.
 */
extern int	dasa_client_socket(const dasa_client *c);
extern int	dasa_client_consume(dasa_client *c);

/* Why the last call failed (never NULL), and its SQLSTATE ("" when none). */
extern const char *dasa_client_error(const dasa_client *c);
extern const char *dasa_client_sqlstate(const dasa_client *c);

/* The worker name the client claims under. */
extern const char *dasa_client_worker(const dasa_client *c);

extern void dasa_tasks_free(dasa_task *tasks, int ntasks);

/* Close the connection (the server releases any claims still held) and free c. */
extern void dasa_client_free(dasa_client *c);

#ifdef __cplusplus
}
#endif

#endif							/* DASA_CLIENT_H */
