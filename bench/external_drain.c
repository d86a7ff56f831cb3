/*
 * external_drain: drain a queue of pre-enqueued tasks with C clients, one
 * thread and one connection each, claiming up to BATCH at a time and
 * completing them as a batch: claim and completion are two transactions,
 * as a worker that does its work between them must make them.
 *
 *   external_drain dasa  DSN CLIENTS BATCH   (libdasa: claim, complete_all)
 *   external_drain plain DSN CLIENTS BATCH   (hand-written SKIP LOCKED queue
 *                                             in plain_jobs, same bookkeeping)
 *
 * Prints "<tasks> <seconds> <tasks/s> <round trip p50 ms> <p99 ms>": the
 * round trip is one claim (of a full batch) plus its completion.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "libpq-fe.h"
#include "dasa_client.h"

#define MAX_SAMPLES 200000

static const char *mode;
static const char *dsn;
static int	batch;
static double samples[MAX_SAMPLES];
static int	nsamples;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

static double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void
record(double ms)
{
	pthread_mutex_lock(&lock);
	if (nsamples < MAX_SAMPLES)
		samples[nsamples++] = ms;
	pthread_mutex_unlock(&lock);
}

static void
die(const char *what, const char *why)
{
	fprintf(stderr, "external_drain: %s: %s\n", what, why);
	exit(1);
}

/* One dasa worker: claim, complete_all, until a claim finds nothing. */
static long
drain_dasa(int me)
{
	char		name[32];
	dasa_client *c;
	long		done = 0;

	snprintf(name, sizeof(name), "drain-%d", me);
	c = dasa_client_connect(dsn, name);
	if (c == NULL || !dasa_client_connected(c))
		die("connect", c ? dasa_client_error(c) : "out of memory");
	for (;;)
	{
		dasa_task  *tasks;
		int			n,
					completed;
		const char *values[1000];
		double		t0 = now_s();

		if (dasa_client_claim(c, "bench", batch, 30000, &tasks, &n) != DASA_OK)
			die("claim", dasa_client_error(c));
		if (n == 0)
			break;
		for (int i = 0; i < n; i++)
			values[i] = "1";
		if (dasa_client_complete_all(c, tasks, values, n, &completed) != DASA_OK)
			die("complete_all", dasa_client_error(c));
		if (n == batch)
			record((now_s() - t0) * 1000);
		done += completed;
		dasa_tasks_free(tasks, n);
	}
	dasa_client_free(c);
	return done;
}

/* One worker of the hand-written queue: the same two transactions. */
static long
drain_plain(int me)
{
	char		worker[32],
				max[16];
	PGconn	   *conn = PQconnectdb(dsn);
	long		done = 0;

	if (PQstatus(conn) != CONNECTION_OK)
		die("connect", PQerrorMessage(conn));
	snprintf(worker, sizeof(worker), "drain-%d", me);
	snprintf(max, sizeof(max), "%d", batch);
	for (;;)
	{
		const char *claim_params[2] = {worker, max};
		PGresult   *res;
		double		t0 = now_s();
		int			n;
		char	   *ids,
				   *versions;
		size_t		ids_len = 2,
					versions_len = 2;

		res = PQexecParams(conn,
						   "WITH due AS (SELECT id FROM plain_jobs WHERE state = 'pending' AND run_at <= now()"
						   "  ORDER BY run_at LIMIT $2 FOR UPDATE SKIP LOCKED) "
						   "UPDATE plain_jobs j SET state = 'claimed', version = j.version + 1, worker = $1,"
						   "  claimed_at = now() FROM due WHERE j.id = due.id RETURNING j.id, j.args, j.version",
						   2, NULL, claim_params, NULL, NULL, 0);
		if (PQresultStatus(res) != PGRES_TUPLES_OK)
			die("claim", PQerrorMessage(conn));
		n = PQntuples(res);
		if (n == 0)
		{
			PQclear(res);
			break;
		}
		for (int i = 0; i < n; i++)
		{
			ids_len += strlen(PQgetvalue(res, i, 0)) + 1;
			versions_len += strlen(PQgetvalue(res, i, 2)) + 1;
		}
		ids = calloc(1, ids_len);
		versions = calloc(1, versions_len);
		strcat(ids, "{");
		strcat(versions, "{");
		for (int i = 0; i < n; i++)
		{
			strcat(ids, PQgetvalue(res, i, 0));
			strcat(versions, PQgetvalue(res, i, 2));
			strcat(ids, i + 1 < n ? "," : "}");
			strcat(versions, i + 1 < n ? "," : "}");
		}
		PQclear(res);
		{
			const char *complete_params[2] = {ids, versions};

			res = PQexecParams(conn,
							   "UPDATE plain_jobs j SET state = 'completed', result = '1', completed_at = now() "
							   "FROM unnest($1::bigint[], $2::bigint[]) v(id, version) "
							   "WHERE j.id = v.id AND j.version = v.version AND j.state = 'claimed'",
							   2, NULL, complete_params, NULL, NULL, 0);
		}
		if (PQresultStatus(res) != PGRES_COMMAND_OK)
			die("complete", PQerrorMessage(conn));
		done += atol(PQcmdTuples(res));
		PQclear(res);
		free(ids);
		free(versions);
		if (n == batch)
			record((now_s() - t0) * 1000);
	}
	PQfinish(conn);
	return done;
}

static void *
run(void *arg)
{
	int			me = (int) (long) arg;
	long		done = strcmp(mode, "dasa") == 0 ? drain_dasa(me) : drain_plain(me);

	return (void *) done;
}

static int
by_value(const void *a, const void *b)
{
	double		x = *(const double *) a,
				y = *(const double *) b;

	return (x > y) - (x < y);
}

static double
percentile(double p)
{
	int			i = (int) (nsamples * p / 100.0 + 0.999999) - 1;

	if (nsamples == 0)
		return 0;
	return samples[i < 0 ? 0 : i];
}

int
main(int argc, char **argv)
{
	int			clients;
	pthread_t	threads[64];
	long		total = 0;
	double		t0,
				took;

	if (argc != 5 || (strcmp(argv[1], "dasa") != 0 && strcmp(argv[1], "plain") != 0))
		die("usage", "external_drain dasa|plain DSN CLIENTS BATCH");
	mode = argv[1];
	dsn = argv[2];
	clients = atoi(argv[3]);
	batch = atoi(argv[4]);
	if (clients < 1 || clients > 64 || batch < 1 || batch > 1000)
		die("usage", "1 to 64 clients, batches of 1 to 1000");
	t0 = now_s();
	for (long i = 0; i < clients; i++)
		pthread_create(&threads[i], NULL, run, (void *) i);
	for (int i = 0; i < clients; i++)
	{
		void	   *done;

		pthread_join(threads[i], &done);
		total += (long) done;
	}
	took = now_s() - t0;
	qsort(samples, nsamples, sizeof(double), by_value);
	printf("%ld %.3f %.0f %.3f %.3f\n", total, took, total / took, percentile(50), percentile(99));
	return 0;
}
