/*
 * invoke_latency: invoke commit -> function start, with an idle pool.
 *
 * For each sample: idle 20 ms (or as given), then invoke (autocommit) a
 * registered function that returns clock_timestamp() as its value; the
 * moment the invoke's commit is acknowledged is taken from the same clock
 * (CLOCK_REALTIME, one machine). After all have run, prints one line per
 * sample: "<ack_to_start_us>" (negative when the function started before
 * the acknowledgement reached the client).
 *
 * usage: invoke_latency "<conninfo>" <function> <samples> <idle_gap_ms>
 */
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double
realtime_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static PGresult *
exec_or_die(PGconn *conn, const char *sql)
{
	PGresult   *res = PQexec(conn, sql);

	if (PQresultStatus(res) != PGRES_TUPLES_OK && PQresultStatus(res) != PGRES_COMMAND_OK)
	{
		fprintf(stderr, "%s: %s", sql, PQerrorMessage(conn));
		exit(1);
	}
	return res;
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

		nanosleep(&gap, NULL);
		snprintf(sql, sizeof(sql), "SELECT dasa.invoke('%s', '{}', 'lat-%ld-%d')", argv[2], run, i);
		PQclear(exec_or_die(conn, sql));
		acked[i] = realtime_us();
	}
	for (int i = 0; i < samples; i++)
	{
		PGresult   *res;

		snprintf(sql, sizeof(sql),
				 "SELECT extract(epoch FROM (dasa.await('lat-%ld-%d')->>'started')::timestamptz) * 1e6",
				 run, i);
		res = exec_or_die(conn, sql);
		printf("%.1f\n", atof(PQgetvalue(res, 0, 0)) - acked[i]);
		PQclear(res);
	}
	PQfinish(conn);
	return 0;
}
