/*
 * await_latency: wake-up latency of dasa.await across sessions.
 *
 * Session A runs dasa.await(id) and blocks; after an idle gap, session B
 * resolves the promise. Per sample it records when B's resolve was sent,
 * when B's commit was acknowledged, and when A's result arrived (one
 * process, one monotonic clock). Prints one line per sample:
 * "<ack_to_wake_us> <send_to_wake_us>".
 *
 * usage: await_latency "<conninfo>" <samples> <idle_gap_ms>
 */
#include <libpq-fe.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double
now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static PGconn *
connect_or_die(const char *conninfo)
{
	PGconn	   *conn = PQconnectdb(conninfo);

	if (PQstatus(conn) != CONNECTION_OK)
	{
		fprintf(stderr, "connection failed: %s", PQerrorMessage(conn));
		exit(1);
	}
	return conn;
}

static void
exec_or_die(PGconn *conn, const char *sql)
{
	PGresult   *res = PQexec(conn, sql);

	if (PQresultStatus(res) != PGRES_TUPLES_OK && PQresultStatus(res) != PGRES_COMMAND_OK)
	{
		fprintf(stderr, "%s: %s", sql, PQerrorMessage(conn));
		exit(1);
	}
	PQclear(res);
}

/* Block until the pending query on conn has its result; returns the arrival time. */
static double
wait_result(PGconn *conn)
{
	struct pollfd pfd = {.fd = PQsocket(conn), .events = POLLIN};
	double		arrived;
	PGresult   *res;

	while (PQisBusy(conn))
	{
		poll(&pfd, 1, -1);
		PQconsumeInput(conn);
	}
	arrived = now_us();
	while ((res = PQgetResult(conn)) != NULL)
	{
		if (PQresultStatus(res) != PGRES_TUPLES_OK)
		{
			fprintf(stderr, "await failed: %s", PQerrorMessage(conn));
			exit(1);
		}
		PQclear(res);
	}
	return arrived;
}

int
main(int argc, char **argv)
{
	PGconn	   *waiter, *settler;
	int			samples, gap_ms;
	char		sql[256];
	long		run = (long) time(NULL);

	if (argc != 4)
	{
		fprintf(stderr, "usage: %s conninfo samples idle_gap_ms\n", argv[0]);
		return 2;
	}
	samples = atoi(argv[2]);
	gap_ms = atoi(argv[3]);
	waiter = connect_or_die(argv[1]);
	settler = connect_or_die(argv[1]);

	for (int i = 0; i < samples; i++)
	{
		struct timespec gap = {.tv_sec = gap_ms / 1000, .tv_nsec = (gap_ms % 1000) * 1000000L};
		double		sent, acked, woke;

		snprintf(sql, sizeof(sql),
				 "SELECT 1 FROM dasa.create_promise('lat-%ld-%d', '1 minute')", run, i);
		exec_or_die(settler, sql);
		snprintf(sql, sizeof(sql), "SELECT dasa.await('lat-%ld-%d')", run, i);
		if (!PQsendQuery(waiter, sql))
			return 1;
		nanosleep(&gap, NULL);
		snprintf(sql, sizeof(sql), "SELECT 1 FROM dasa.resolve('lat-%ld-%d', '1')", run, i);
		sent = now_us();
		exec_or_die(settler, sql);
		acked = now_us();
		woke = wait_result(waiter);
		printf("%.1f %.1f\n", woke - acked, woke - sent);
	}
	PQfinish(waiter);
	PQfinish(settler);
	return 0;
}
