/*
 * dasa_client.c: the external worker protocol of dasa over libpq.
 *
 * Every call is one statement of its own (autocommit), its parameters
 * passed out of line (PQexecParams). A connection that broke is dropped at
 * once (dasa_client_socket() is then -1) and every call says
 * DASA_ERR_CONNECTION until dasa_client_reconnect() succeeds, which LISTENs
 * again for the queues listened before.
 */
#include "dasa_client.h"

#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libpq-fe.h>

/* The largest claim dasa.claim accepts. */
#define MAX_CLAIM 1000

struct dasa_client
{
	char	   *dsn;
	char	   *worker;
	PGconn	   *conn;			/* NULL when not connected */
	char	  **queues;			/* listened queues */
	char	  **channels;		/* their channels, on this connection (NULL: not yet) */
	int			nqueues;
	int			pending;		/* notifications of listened queues not yet reported */
	char		sqlstate[6];
	char		state[32];		/* the promise's state after the last complete or fail */
	char		error[1024];
};

static void
set_error(dasa_client *c, const char *sqlstate, const char *fmt,...)
{
	va_list		ap;
	size_t		len;

	va_start(ap, fmt);
	vsnprintf(c->error, sizeof(c->error), fmt, ap);
	va_end(ap);
	len = strlen(c->error);
	while (len > 0 && (c->error[len - 1] == '\n' || c->error[len - 1] == ' '))
		c->error[--len] = '\0';
	snprintf(c->sqlstate, sizeof(c->sqlstate), "%s", sqlstate ? sqlstate : "");
}

static int
nomem(dasa_client *c)
{
	set_error(c, NULL, "out of memory");
	return DASA_ERR_NOMEM;
}

static void
disconnect(dasa_client *c)
{
	if (c->conn != NULL)
		PQfinish(c->conn);
	c->conn = NULL;
	for (int i = 0; i < c->nqueues; i++)
	{
		free(c->channels[i]);
		c->channels[i] = NULL;
	}
}

static int
listened(const dasa_client *c, const char *channel)
{
	for (int i = 0; i < c->nqueues; i++)
		if (c->channels[i] != NULL && strcmp(c->channels[i], channel) == 0)
			return 1;
	return 0;
}

/* Count the notifications libpq has read (during any call) for listened queues. */
static void
collect_notifications(dasa_client *c)
{
	PGnotify   *n;

	if (c->conn == NULL)
		return;
	while ((n = PQnotifies(c->conn)) != NULL)
	{
		if (listened(c, n->relname))
			c->pending++;
		PQfreemem(n);
	}
}

/* Is an error with this SQLSTATE one of the connection (it ends, or ended, the session)? */
static int
connection_sqlstate(const char *sqlstate)
{
	return strncmp(sqlstate, "08", 2) == 0 || strcmp(sqlstate, "57P01") == 0 ||
		strcmp(sqlstate, "57P02") == 0 || strcmp(sqlstate, "57P03") == 0;
}

/*
 * Run sql with nparams text parameters; returns its result (to PQclear)
 * when it succeeded, else NULL with *rc the DASA_ERR_* code (the
 * connection dropped if it broke).
 */
static PGresult *
run(dasa_client *c, const char *sql, int nparams, const char *const *params, int *rc)
{
	PGresult   *res;
	const char *sqlstate;
	const char *message;

	c->error[0] = '\0';
	c->sqlstate[0] = '\0';
	if (c->conn == NULL)
	{
		set_error(c, NULL, "not connected");
		*rc = DASA_ERR_CONNECTION;
		return NULL;
	}
	res = PQexecParams(c->conn, sql, nparams, NULL, params, NULL, NULL, 0);
	collect_notifications(c);
	if (res != NULL && (PQresultStatus(res) == PGRES_TUPLES_OK || PQresultStatus(res) == PGRES_COMMAND_OK))
	{
		*rc = DASA_OK;
		return res;
	}
	if (res == NULL)
	{
		set_error(c, NULL, "%s", PQerrorMessage(c->conn));
		*rc = PQstatus(c->conn) == CONNECTION_BAD ? DASA_ERR_CONNECTION : DASA_ERR_NOMEM;
	}
	else
	{
		sqlstate = PQresultErrorField(res, PG_DIAG_SQLSTATE);
		message = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
		if (message == NULL)
			message = PQresultErrorMessage(res);
		if (message == NULL || message[0] == '\0')
			message = PQerrorMessage(c->conn);
		set_error(c, sqlstate, "%s", message);
		/* No SQLSTATE: libpq's own error (the connection broke, or is out of step). */
		if (PQstatus(c->conn) == CONNECTION_BAD || sqlstate == NULL || connection_sqlstate(sqlstate))
			*rc = DASA_ERR_CONNECTION;
		else if (sqlstate != NULL && strcmp(sqlstate, "DA008") == 0)
			*rc = DASA_ERR_STALE;
		else
			*rc = DASA_ERR_SERVER;
		PQclear(res);
	}
	if (*rc == DASA_ERR_CONNECTION)
		disconnect(c);
	return NULL;
}

/* LISTEN for queue i on this connection. */
static int
listen_queue(dasa_client *c, int i)
{
	const char *params[1] = {c->queues[i]};
	PGresult   *res;
	char	   *ident;
	char	   *sql;
	char	   *channel;
	int			rc;

	res = run(c, "SELECT dasa.queue_channel($1)", 1, params, &rc);
	if (res == NULL)
		return rc;
	channel = PQntuples(res) == 1 ? strdup(PQgetvalue(res, 0, 0)) : NULL;
	PQclear(res);
	if (channel == NULL)
		return nomem(c);
	ident = PQescapeIdentifier(c->conn, channel, strlen(channel));
	if (ident == NULL)
	{
		free(channel);
		return nomem(c);
	}
	sql = malloc(strlen(ident) + sizeof("LISTEN "));
	if (sql == NULL)
	{
		PQfreemem(ident);
		free(channel);
		return nomem(c);
	}
	strcpy(sql, "LISTEN ");
	strcat(sql, ident);
	PQfreemem(ident);
	res = run(c, sql, 0, NULL, &rc);
	free(sql);
	if (res == NULL)
	{
		free(channel);
		return rc;
	}
	PQclear(res);
	free(c->channels[i]);
	c->channels[i] = channel;
	return DASA_OK;
}

static int
do_connect(dasa_client *c)
{
	/* Before dbname, so that the dsn may override them. */
	const char *const keywords[] = {"fallback_application_name", "connect_timeout", "client_encoding", "dbname", NULL};
	const char *const values[] = {c->worker, "10", "UTF8", c->dsn, NULL};
	int			rc;

	disconnect(c);
	c->conn = PQconnectdbParams(keywords, values, 1);
	if (c->conn == NULL)
		return nomem(c);
	if (PQstatus(c->conn) != CONNECTION_OK)
	{
		set_error(c, NULL, "%s", PQerrorMessage(c->conn));
		disconnect(c);
		return DASA_ERR_CONNECTION;
	}
	for (int i = 0; i < c->nqueues; i++)
		if ((rc = listen_queue(c, i)) != DASA_OK)
		{
			if (rc != DASA_ERR_CONNECTION)
				disconnect(c);
			return rc == DASA_ERR_NOMEM ? rc : DASA_ERR_CONNECTION;
		}
	c->error[0] = '\0';
	c->sqlstate[0] = '\0';
	return DASA_OK;
}

dasa_client *
dasa_client_connect(const char *dsn, const char *worker)
{
	dasa_client *c;

	if (dsn == NULL || worker == NULL || worker[0] == '\0')
		return NULL;
	c = calloc(1, sizeof(*c));
	if (c == NULL)
		return NULL;
	c->dsn = strdup(dsn);
	c->worker = strdup(worker);
	if (c->dsn == NULL || c->worker == NULL)
	{
		dasa_client_free(c);
		return NULL;
	}
	(void) do_connect(c);
	return c;
}

int
dasa_client_connected(const dasa_client *c)
{
	return c->conn != NULL && PQstatus(c->conn) == CONNECTION_OK;
}

int
dasa_client_reconnect(dasa_client *c)
{
	return do_connect(c);
}

int
dasa_client_listen(dasa_client *c, const char *queue)
{
	char	  **queues;
	char	  **channels;
	int			i;
	int			rc;

	if (queue == NULL || queue[0] == '\0')
	{
		set_error(c, NULL, "the queue must not be empty");
		return DASA_ERR_USAGE;
	}
	for (i = 0; i < c->nqueues; i++)
		if (strcmp(c->queues[i], queue) == 0)
			break;
	if (i == c->nqueues)
	{
		queues = realloc(c->queues, sizeof(char *) * (c->nqueues + 1));
		if (queues == NULL)
			return nomem(c);
		c->queues = queues;
		channels = realloc(c->channels, sizeof(char *) * (c->nqueues + 1));
		if (channels == NULL)
			return nomem(c);
		c->channels = channels;
		if ((c->queues[i] = strdup(queue)) == NULL)
			return nomem(c);
		c->channels[i] = NULL;
		c->nqueues++;
	}
	else if (c->channels[i] != NULL && c->conn != NULL)
		return DASA_OK;
	rc = listen_queue(c, i);
	if (rc == DASA_ERR_SERVER || rc == DASA_ERR_USAGE)
	{
		/* Not one to listen for after a reconnect either. */
		free(c->queues[i]);
		free(c->channels[i]);
		c->queues[i] = c->queues[c->nqueues - 1];
		c->channels[i] = c->channels[c->nqueues - 1];
		c->nqueues--;
	}
	return rc;
}

void
dasa_tasks_free(dasa_task *tasks, int ntasks)
{
	if (tasks == NULL)
		return;
	for (int i = 0; i < ntasks; i++)
	{
		free(tasks[i].id);
		free(tasks[i].function);
		free(tasks[i].args);
	}
	free(tasks);
}

int
dasa_client_claim(dasa_client *c, const char *queue, int max, int lease_ms,
				  dasa_task **tasks, int *ntasks)
{
	char		max_text[16];
	char		lease_text[16];
	const char *params[4] = {queue, c->worker, max_text, lease_text};
	PGresult   *res;
	dasa_task  *out;
	int			n;
	int			rc;

	*tasks = NULL;
	*ntasks = 0;
	if (queue == NULL || queue[0] == '\0' || max < 1 || max > MAX_CLAIM || lease_ms < 1000)
	{
		set_error(c, NULL, "claim needs a queue, max between 1 and %d and a lease of at least 1000 ms", MAX_CLAIM);
		return DASA_ERR_USAGE;
	}
	snprintf(max_text, sizeof(max_text), "%d", max);
	snprintf(lease_text, sizeof(lease_text), "%d", lease_ms);
	res = run(c, "SELECT id, function, args::text, attempt, version "
			  "FROM dasa.claim($1, $2, $3::integer, $4::integer * interval '1 millisecond', true)",
			  4, params, &rc);
	if (res == NULL)
		return rc;
	n = PQntuples(res);
	if (n == 0)
	{
		PQclear(res);
		return DASA_OK;
	}
	out = calloc(n, sizeof(dasa_task));
	if (out == NULL)
	{
		PQclear(res);
		return nomem(c);
	}
	for (int i = 0; i < n; i++)
	{
		out[i].id = strdup(PQgetvalue(res, i, 0));
		out[i].function = strdup(PQgetvalue(res, i, 1));
		out[i].args = strdup(PQgetvalue(res, i, 2));
		out[i].attempt = atoi(PQgetvalue(res, i, 3));
		out[i].version = strtoll(PQgetvalue(res, i, 4), NULL, 10);
		if (out[i].id == NULL || out[i].function == NULL || out[i].args == NULL)
		{
			/*
			 * The claims stand: they are released when this session ends
			 * or their lease runs out.
			 */
			PQclear(res);
			dasa_tasks_free(out, n);
			return nomem(c);
		}
	}
	PQclear(res);
	*tasks = out;
	*ntasks = n;
	return DASA_OK;
}

int
dasa_client_heartbeat(dasa_client *c, int *held)
{
	const char *params[1] = {c->worker};
	PGresult   *res;
	int			rc;

	res = run(c, "SELECT dasa.heartbeat($1)", 1, params, &rc);
	if (res == NULL)
		return rc;
	if (held != NULL)
		*held = PQntuples(res) == 1 ? atoi(PQgetvalue(res, 0, 0)) : 0;
	PQclear(res);
	return DASA_OK;
}

/* Run a complete or fail statement: params id, version, then the rest; keeps the state. */
static int
settle(dasa_client *c, const char *sql, int nparams, const char *id, long long version,
	   const char *third, const char *fourth)
{
	char		version_text[24];
	const char *params[4] = {id, version_text, third, fourth};
	PGresult   *res;
	int			rc;

	if (id == NULL || id[0] == '\0')
	{
		set_error(c, NULL, "the task id must not be empty");
		return DASA_ERR_USAGE;
	}
	snprintf(version_text, sizeof(version_text), "%lld", version);
	c->state[0] = '\0';
	res = run(c, sql, nparams, params, &rc);
	if (res == NULL)
		return rc;
	if (PQntuples(res) == 1)
		snprintf(c->state, sizeof(c->state), "%s", PQgetvalue(res, 0, 0));
	PQclear(res);
	return DASA_OK;
}

int
dasa_client_complete(dasa_client *c, const char *id, long long version, const char *value_json)
{
	return settle(c, "SELECT (dasa.complete($1, $2::bigint, $3::jsonb)).state", 3,
				  id, version, value_json, NULL);
}

int
dasa_client_complete_text(dasa_client *c, const char *id, long long version, const char *text)
{
	if (text == NULL)
	{
		set_error(c, NULL, "the text must not be NULL");
		return DASA_ERR_USAGE;
	}
	return settle(c, "SELECT (dasa.complete($1, $2::bigint, pg_catalog.to_jsonb($3::text))).state", 3,
				  id, version, text, NULL);
}

int
dasa_client_fail(dasa_client *c, const char *id, long long version, const char *error_json, int retry)
{
	return settle(c, "SELECT (dasa.fail($1, $2::bigint, $3::jsonb, $4::boolean)).state", 4,
				  id, version, error_json, retry ? "true" : "false");
}

int
dasa_client_release(dasa_client *c, const char *id, long long version)
{
	return settle(c, "SELECT dasa.release($1, $2::bigint)", 2, id, version, NULL, NULL);
}

int
dasa_client_enter(dasa_client *c, const char *id, long long version)
{
	return settle(c, "SELECT dasa.enter_task($1, $2::bigint)", 2, id, version, NULL, NULL);
}

/* A growing NUL-terminated string. */
typedef struct Text
{
	char	   *data;
	size_t		len;
	size_t		cap;
} Text;

/* Append n bytes of s to t; 0 if out of memory. */
static int
buf_append(Text *t, const char *s, size_t n)
{
	if (t->len + n + 1 > t->cap)
	{
		size_t		cap = t->cap ? t->cap : 64;
		char	   *grown;

		while (t->len + n + 1 > cap)
			cap *= 2;
		grown = realloc(t->data, cap);
		if (grown == NULL)
			return 0;
		t->data = grown;
		t->cap = cap;
	}
	memcpy(t->data + t->len, s, n);
	t->len += n;
	t->data[t->len] = '\0';
	return 1;
}

/* Append s to the array literal in b as a quoted element (or NULL); 0 if out of memory. */
static int
append_element(Text *b, const char *s)
{
	if (b->len > 1 && !buf_append(b, ",", 1))
		return 0;
	if (s == NULL)
		return buf_append(b, "NULL", 4);
	if (!buf_append(b, "\"", 1))
		return 0;
	for (; *s; s++)
		if (((*s == '"' || *s == '\\') && !buf_append(b, "\\", 1)) || !buf_append(b, s, 1))
			return 0;
	return buf_append(b, "\"", 1);
}

int
dasa_client_complete_all(dasa_client *c, const dasa_task *tasks, const char *const *values_json,
						 int n, int *completed)
{
	Text		ids = {0},
				versions = {0},
				values = {0};
	const char *params[3];
	PGresult   *res;
	int			rc = DASA_ERR_NOMEM;
	int			ok;
	char		version_text[24];

	if (completed != NULL)
		*completed = 0;
	if (n < 0 || n > MAX_CLAIM || (n > 0 && tasks == NULL))
	{
		set_error(c, NULL, "complete_all takes 0 to %d tasks", MAX_CLAIM);
		return DASA_ERR_USAGE;
	}
	if (n == 0)
		return DASA_OK;
	ok = buf_append(&ids, "{", 1) && buf_append(&versions, "{", 1) && buf_append(&values, "{", 1);
	for (int i = 0; ok && i < n; i++)
	{
		snprintf(version_text, sizeof(version_text), "%lld", tasks[i].version);
		ok = append_element(&ids, tasks[i].id) && append_element(&versions, version_text) &&
			append_element(&values, values_json ? values_json[i] : NULL);
	}
	ok = ok && buf_append(&ids, "}", 1) && buf_append(&versions, "}", 1) && buf_append(&values, "}", 1);
	if (ok)
	{
		params[0] = ids.data;
		params[1] = versions.data;
		params[2] = values.data;
		res = run(c, "SELECT dasa.complete_all($1::text[], $2::bigint[], $3::jsonb[])", 3, params, &rc);
		if (res != NULL)
		{
			if (completed != NULL)
				*completed = atoi(PQgetvalue(res, 0, 0));
			PQclear(res);
		}
	}
	else
		(void) nomem(c);
	free(ids.data);
	free(versions.data);
	free(values.data);
	return rc;
}

const char *
dasa_client_promise_state(const dasa_client *c)
{
	return c->state;
}

struct pg_conn *
dasa_client_conn(const dasa_client *c)
{
	return c->conn;
}

int
dasa_client_socket(const dasa_client *c)
{
	return c->conn != NULL ? PQsocket(c->conn) : -1;
}

/* Read what the server sent; DASA_OK or DASA_ERR_CONNECTION (then dropped). */
static int
read_input(dasa_client *c)
{
	if (c->conn == NULL)
	{
		set_error(c, NULL, "not connected");
		return DASA_ERR_CONNECTION;
	}
	if (!PQconsumeInput(c->conn) || PQstatus(c->conn) == CONNECTION_BAD)
	{
		set_error(c, NULL, "%s", PQerrorMessage(c->conn));
		disconnect(c);
		return DASA_ERR_CONNECTION;
	}
	collect_notifications(c);
	return DASA_OK;
}

int
dasa_client_consume(dasa_client *c)
{
	int			rc = read_input(c);
	int			n;

	if (rc != DASA_OK)
		return rc;
	n = c->pending;
	c->pending = 0;
	return n;
}

static long long
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int
dasa_client_wait_for_work(dasa_client *c, int timeout_ms)
{
	long long	deadline = now_ms() + (timeout_ms < 0 ? 0 : timeout_ms);
	int			rc;

	if (c->pending == 0 && (rc = read_input(c)) != DASA_OK)
		return rc;
	for (;;)
	{
		struct pollfd pfd;
		int			wait_ms;
		int			r;

		if (c->pending > 0)
		{
			c->pending = 0;
			return 1;
		}
		if (c->conn == NULL)
		{
			set_error(c, NULL, "not connected");
			return DASA_ERR_CONNECTION;
		}
		wait_ms = -1;
		if (timeout_ms >= 0)
		{
			long long	left = deadline - now_ms();

			if (left <= 0)
				return 0;
			wait_ms = left > 1000000000 ? 1000000000 : (int) left;
		}
		pfd.fd = PQsocket(c->conn);
		pfd.events = POLLIN;
		pfd.revents = 0;
		r = poll(&pfd, 1, wait_ms);
		if (r < 0)
		{
			if (errno == EINTR)
				return 0;
			set_error(c, NULL, "poll: %s", strerror(errno));
			return DASA_ERR_CONNECTION;
		}
		if (r == 0)
			return 0;
		if ((rc = read_input(c)) != DASA_OK)
			return rc;
	}
}

const char *
dasa_client_error(const dasa_client *c)
{
	return c->error;
}

const char *
dasa_client_sqlstate(const dasa_client *c)
{
	return c->sqlstate;
}

const char *
dasa_client_worker(const dasa_client *c)
{
	return c->worker;
}

void
dasa_client_free(dasa_client *c)
{
	if (c == NULL)
		return;
	disconnect(c);
	for (int i = 0; i < c->nqueues; i++)
		free(c->queues[i]);
	free(c->queues);
	free(c->channels);
	free(c->dsn);
	free(c->worker);
	free(c);
}
