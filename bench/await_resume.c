/*
 * await_resume: settle -> awaiting parent resumed, with idle executors.
 *
 * For each sample: invoke a parent that awaits its own external promise and
 * returns clock_timestamp() when it runs again; wait until it has suspended;
 * idle 20 ms (or as given); resolve the promise (autocommit) and note when
 * that commit is acknowledged (CLOCK_REALTIME, the server's clock too: one
 * machine). After all, prints one line per sample: "<ack_to_resume_us>".
 *
 * usage: await_resume "<conninfo>" <parent function> <samples> <idle_gap_ms>
 */
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double
realtime_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static char *
query_value(PGconn *conn, const char *sql)
{
	static char value[256];
	PGresult   *res = PQexec(conn, sql);

	if (PQresultStatus(res) != PGRES_TUPLES_OK && PQresultStatus(res) != PGRES_COMMAND_OK)
	{
		fprintf(stderr, "%s: %s", sql, PQerrorMessage(conn));
		exit(1);
	}
	value[0] = '\0';
	if (PQntuples(res) > 0)
		snprintf(value, sizeof(value), "%s", PQgetvalue(res, 0, 0));
	PQclear(res);
	return value;
}

int
main(int argc, char **argv)
{
	PGconn	   *conn;
	int			samples, gap_ms;
	double	   *acked;
	char		sql[512];
	long		run = (long) time(NULL);

	if (argc != 5)
	{
		fprintf(stderr, "usage: %s conninfo function samples idle_gap_ms\n", argv[0]);
		return 2;
	}
	samples = atoi(argv[3]);
	gap_ms = atoi(argv[4]);
	acked = calloc(samples, sizeof(double));
	conn = PQconnectdb(argv[1]);
	if (PQstatus(conn) != CONNECTION_OK)
	{
		fprintf(stderr, "connection failed: %s", PQerrorMessage(conn));
		return 1;
	}
	for (int i = 0; i < samples; i++)
	{
		struct timespec gap = {.tv_sec = gap_ms / 1000, .tv_nsec = (gap_ms % 1000) * 1000000L};
		struct timespec poll = {.tv_sec = 0, .tv_nsec = 1000000L};

		snprintf(sql, sizeof(sql),
				 "SELECT dasa.create_promise('ext-%ld-%d', '1 minute'), "
				 "dasa.invoke('%s', jsonb_build_object('ext', 'ext-%ld-%d'), 'res-%ld-%d')",
				 run, i, argv[2], run, i, run, i);
		query_value(conn, sql);
		snprintf(sql, sizeof(sql), "SELECT state FROM dasa.tasks WHERE id = 'res-%ld-%d'", run, i);
		while (strcmp(query_value(conn, sql), "suspended") != 0)
			nanosleep(&poll, NULL);
		nanosleep(&gap, NULL);
		snprintf(sql, sizeof(sql), "SELECT 1 FROM dasa.resolve('ext-%ld-%d', '1')", run, i);
		query_value(conn, sql);
		acked[i] = realtime_us();
	}
	for (int i = 0; i < samples; i++)
	{
		snprintf(sql, sizeof(sql),
				 "SELECT extract(epoch FROM (dasa.await('res-%ld-%d')->>'resumed')::timestamptz) * 1e6",
				 run, i);
		printf("%.1f\n", atof(query_value(conn, sql)) - acked[i]);
	}
	PQfinish(conn);
	return 0;
}
