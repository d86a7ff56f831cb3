/*
 * dasa-worker: run a command once per task of a dasa queue.
 *
 *   dasa-worker --dsn DSN --queue QUEUE [--concurrency N] -- COMMAND [ARG]...
 *
 * One connection (libdasa) LISTENs for the queue, claims as many tasks as
 * there are free slots (bound to its session, so that the server releases
 * them within seconds if this process dies), heartbeats while commands run,
 * and completes or fails each task when its command exits. The commands are
 * child processes, each in a process group of its own, fed and drained by
 * one poll loop (with the connection's socket and a self-pipe for signals),
 * so that nothing blocks on a command that writes much or reads nothing.
 * A connection that breaks is made again with a backoff (100 ms doubling to
 * 5 s) while the commands go on running; their results wait for it.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/prctl.h>
#endif

#include "dasa_client.h"

#define MAX_CONCURRENCY 1000
#define MAX_OUTPUT (64 * 1024 * 1024)	/* most standard output a command may give */
#define ERROR_TAIL 8192			/* the end of standard error kept as the message */
#define KILL_AFTER_MS 5000		/* SIGKILL this long after a SIGTERM that did not end the command */
#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000
#define FLUSH_AFTER_STOP_MS 5000	/* after stopping, how long to try to report results */
#define LOG_REPEAT_MS 30000		/* an error that repeats is logged this often */

typedef struct Buf
{
	char	   *data;
	size_t		len;
	size_t		cap;
} Buf;

/* A running command and the task it works. */
typedef struct Slot
{
	int			used;
	dasa_task	task;
	pid_t		pid;
	int			in_fd;			/* -1 once closed */
	int			out_fd;
	int			err_fd;
	Buf			input;			/* the args and a newline */
	size_t		input_off;
	Buf			out;
	int			out_overflow;
	Buf			err;			/* its tail */
	int			err_truncated;
	int			reaped;
	int			status;
	long long	started;
	long long	deadline;		/* 0: no timeout */
	long long	term_at;		/* when dasa-worker sent SIGTERM (0: not) */
	int			killed;			/* and SIGKILL */
	const char *why;			/* why dasa-worker stopped it */
	int			give_back;		/* stopped by the shutdown: release, not fail */
} Slot;

#define OUTCOME_FAIL 0
#define OUTCOME_COMPLETE 1
#define OUTCOME_RELEASE 2		/* not the task's fault: due again, no attempt spent */

/* A task's outcome waiting to be reported. */
typedef struct Result
{
	struct Result *next;
	char	   *id;
	long long	version;
	int			outcome;		/* OUTCOME_* */
	char	   *payload;		/* complete: the output; fail: the error (JSON) */
	size_t		payload_len;
} Result;

typedef struct Limiter
{
	char		last[256];
	long long	at;
} Limiter;

static volatile sig_atomic_t stop_signals = 0;
static volatile sig_atomic_t child_exited = 0;
static int	signal_pipe[2] = {-1, -1};
static int	verbose = 0;

static Result *results = NULL;
static Result **results_tail = &results;

/* ---- utilities ---- */

static long long
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void
logmsg(const char *fmt,...)
{
	struct timeval tv;
	struct tm	tm;
	char		stamp[32];
	va_list		ap;

	gettimeofday(&tv, NULL);
	localtime_r(&tv.tv_sec, &tm);
	strftime(stamp, sizeof(stamp), "%Y-%m-%d %H:%M:%S", &tm);
	fprintf(stderr, "%s.%03d dasa-worker[%d]: ", stamp, (int) (tv.tv_usec / 1000), (int) getpid());
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

/* Log msg unless it is what this limiter logged last, less than LOG_REPEAT_MS ago. */
static void
log_limited(Limiter *l, const char *what, const char *msg)
{
	char		line[256];
	long long	now = now_ms();

	snprintf(line, sizeof(line), "%s: %s", what, msg);
	if (strcmp(line, l->last) == 0 && now - l->at < LOG_REPEAT_MS)
		return;
	snprintf(l->last, sizeof(l->last), "%s", line);
	l->at = now;
	logmsg("%s", line);
}

static void
out_of_memory(void)
{
	logmsg("out of memory");
	exit(1);
}

static void
buf_reserve(Buf *b, size_t more)
{
	size_t		cap;
	char	   *data;

	if (b->len + more + 1 <= b->cap)
		return;
	cap = b->cap ? b->cap : 256;
	while (cap < b->len + more + 1)
		cap *= 2;
	data = realloc(b->data, cap);
	if (data == NULL)
		out_of_memory();
	b->data = data;
	b->cap = cap;
}

static void
buf_append(Buf *b, const char *data, size_t len)
{
	buf_reserve(b, len);
	memcpy(b->data + b->len, data, len);
	b->len += len;
	b->data[b->len] = '\0';
}

static void
buf_puts(Buf *b, const char *s)
{
	buf_append(b, s, strlen(s));
}

static void
buf_free(Buf *b)
{
	free(b->data);
	b->data = NULL;
	b->len = b->cap = 0;
}

static char *
xstrdup(const char *s)
{
	char	   *d = strdup(s);

	if (d == NULL)
		out_of_memory();
	return d;
}

/* Length of the valid UTF-8 sequence at s (n bytes left), or 0. */
static size_t
utf8_sequence(const unsigned char *s, size_t n)
{
	unsigned char c = s[0];
	size_t		len;
	unsigned char lo = 0x80,
				hi = 0xBF;

	if (c < 0x80)
		return 1;
	if (c >= 0xC2 && c <= 0xDF)
		len = 2;
	else if (c >= 0xE0 && c <= 0xEF)
	{
		len = 3;
		if (c == 0xE0)
			lo = 0xA0;
		else if (c == 0xED)
			hi = 0x9F;
	}
	else if (c >= 0xF0 && c <= 0xF4)
	{
		len = 4;
		if (c == 0xF0)
			lo = 0x90;
		else if (c == 0xF4)
			hi = 0x8F;
	}
	else
		return 0;
	if (n < len || s[1] < lo || s[1] > hi)
		return 0;
	for (size_t i = 2; i < len; i++)
		if (s[i] < 0x80 || s[i] > 0xBF)
			return 0;
	return len;
}

/*
 * Append s (len bytes) to b as a JSON string: escaped, and any byte that is
 * not valid UTF-8, or NUL (jsonb refuses \u0000), as U+FFFD.
 */
static void
json_string(Buf *b, const char *s, size_t len)
{
	const unsigned char *p = (const unsigned char *) s;
	size_t		i = 0;

	buf_puts(b, "\"");
	while (i < len)
	{
		size_t		n = utf8_sequence(p + i, len - i);
		char		esc[8];

		if (n == 0 || p[i] == 0)
		{
			buf_puts(b, "\xEF\xBF\xBD");
			i++;
			continue;
		}
		if (n > 1)
			buf_append(b, s + i, n);
		else if (p[i] == '"')
			buf_puts(b, "\\\"");
		else if (p[i] == '\\')
			buf_puts(b, "\\\\");
		else if (p[i] == '\n')
			buf_puts(b, "\\n");
		else if (p[i] == '\t')
			buf_puts(b, "\\t");
		else if (p[i] == '\r')
			buf_puts(b, "\\r");
		else if (p[i] < 0x20)
		{
			snprintf(esc, sizeof(esc), "\\u%04x", p[i]);
			buf_puts(b, esc);
		}
		else
			buf_append(b, s + i, 1);
		i += n;
	}
	buf_puts(b, "\"");
}

static int
is_space(char c)
{
	return c == ' ' || c == '\n' || c == '\r' || c == '\t';
}

static void
set_nonblocking(int fd)
{
	int			flags = fcntl(fd, F_GETFL);

	if (flags >= 0)
		(void) fcntl(fd, F_SETFL, flags | O_NONBLOCK);
}

static void
close_fd(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

/* ---- signals ---- */

static void
on_signal(int signo)
{
	int			saved = errno;
	ssize_t		r;

	if (signo == SIGCHLD)
		child_exited = 1;
	else
		stop_signals++;
	r = write(signal_pipe[1], "x", 1);
	(void) r;
	errno = saved;
}

static void
setup_signals(void)
{
	struct sigaction sa;

	if (pipe2(signal_pipe, O_CLOEXEC | O_NONBLOCK) != 0)
	{
		logmsg("could not create a pipe: %s", strerror(errno));
		exit(1);
	}
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sa.sa_flags = SA_RESTART;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sa.sa_flags = SA_RESTART | SA_NOCLDSTOP;
	sigaction(SIGCHLD, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
}

/* ---- results ---- */

static void
push_result(const dasa_task *task, int outcome, const char *payload, size_t len)
{
	Result	   *r = calloc(1, sizeof(Result));

	if (r == NULL)
		out_of_memory();
	r->id = xstrdup(task->id);
	r->version = task->version;
	r->outcome = outcome;
	r->payload = malloc(len + 1);
	if (r->payload == NULL)
		out_of_memory();
	memcpy(r->payload, payload, len);
	r->payload[len] = '\0';
	r->payload_len = len;
	*results_tail = r;
	results_tail = &r->next;
}

static void
push_failure(const dasa_task *task, const char *message, const char *key, int value,
			 const char *stderr_text)
{
	Buf			e = {0};
	char		num[32];

	buf_puts(&e, "{\"message\": ");
	json_string(&e, message, strlen(message));
	if (key != NULL)
	{
		snprintf(num, sizeof(num), ", \"%s\": %d", key, value);
		buf_puts(&e, num);
	}
	if (stderr_text != NULL && stderr_text[0] != '\0')
	{
		buf_puts(&e, ", \"stderr\": ");
		json_string(&e, stderr_text, strlen(stderr_text));
	}
	buf_puts(&e, "}");
	push_result(task, OUTCOME_FAIL, e.data, e.len);
	buf_free(&e);
}

static void
pop_result(void)
{
	Result	   *r = results;

	results = r->next;
	if (results == NULL)
		results_tail = &results;
	free(r->id);
	free(r->payload);
	free(r);
}

static const char *const outcome_name[] = {"failed", "completed", "released"};

/*
 * Report the waiting results in order; stops at a lost connection (they
 * wait for the next). Output that the server does not take as JSON
 * resolves as a JSON string; output it does not take at all fails the
 * attempt with the server's reason.
 */
static void
flush_results(dasa_client *c)
{
	while (results != NULL)
	{
		Result	   *r = results;
		int			rc;

		if (r->outcome == OUTCOME_COMPLETE)
		{
			size_t		end = r->payload_len;
			size_t		start = 0;
			Buf			text = {0};

			while (start < end && is_space(r->payload[start]))
				start++;
			if (start == end)
				rc = dasa_client_complete(c, r->id, r->version, "null");
			else if (memchr(r->payload, '\0', r->payload_len) != NULL)
				rc = DASA_ERR_SERVER;	/* not JSON: straight to a string */
			else
				rc = dasa_client_complete(c, r->id, r->version, r->payload);
			if (rc == DASA_ERR_SERVER &&
				(memchr(r->payload, '\0', r->payload_len) != NULL ||
				 strncmp(dasa_client_sqlstate(c), "22", 2) == 0))
			{
				while (end > 0 && (r->payload[end - 1] == '\n' || r->payload[end - 1] == '\r'))
					end--;
				json_string(&text, r->payload, end);
				rc = dasa_client_complete(c, r->id, r->version, text.data);
				buf_free(&text);
			}
			if (rc == DASA_ERR_SERVER)
			{
				char		message[1200];
				dasa_task	t = {.id = r->id, .version = r->version};

				snprintf(message, sizeof(message), "could not resolve the task with the command's output: %s",
						 dasa_client_error(c));
				logmsg("task %s: %s", r->id, message);
				push_failure(&t, message, NULL, 0, NULL);	/* (queued after r) */
				pop_result();
				continue;
			}
		}
		else if (r->outcome == OUTCOME_RELEASE)
			rc = dasa_client_release(c, r->id, r->version);
		else
			rc = dasa_client_fail(c, r->id, r->version, r->payload, 1);
		switch (rc)
		{
			case DASA_OK:
				if (verbose)
					logmsg("task %s: %s, now %s", r->id, outcome_name[r->outcome],
						   dasa_client_promise_state(c));
				break;
			case DASA_ERR_CONNECTION:
				return;
			case DASA_ERR_STALE:
				logmsg("task %s: the claim was lost (its lease ran out or the session ended); result dropped: %s",
					   r->id, dasa_client_error(c));
				break;
			default:
				logmsg("task %s: could not report it %s: %s", r->id, outcome_name[r->outcome],
					   dasa_client_error(c));
				break;
		}
		pop_result();
	}
}

/* ---- commands ---- */

typedef struct Config
{
	const char *dsn;
	const char *queue;
	const char *name;
	int			concurrency;
	long long	lease_ms;
	long long	poll_ms;
	long long	grace_ms;
	long long	timeout_ms;		/* 0: none */
	char	  **command;
} Config;

static void
child_setenv(const char *name, const char *value)
{
	if (setenv(name, value, 1) != 0)
		_exit(127);
}

/* Start the command for s->task; 0, or -1 (errno set) if it could not be started. */
static int
spawn(Slot *s, const Config *cfg, const char *worker)
{
	int			in[2] = {-1, -1},
				out[2] = {-1, -1},
				err[2] = {-1, -1};
#ifdef __linux__
	pid_t		parent = getpid();
#endif
	pid_t		pid;
	int			saved;

	if (pipe2(in, O_CLOEXEC) != 0 || pipe2(out, O_CLOEXEC) != 0 || pipe2(err, O_CLOEXEC) != 0)
		goto fail;
	pid = fork();
	if (pid < 0)
		goto fail;
	if (pid == 0)
	{
		char		num[32];
		sigset_t	none;

		signal(SIGPIPE, SIG_DFL);
		signal(SIGTERM, SIG_DFL);
		signal(SIGINT, SIG_DFL);
		signal(SIGCHLD, SIG_DFL);
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		/* A group of its own: a Ctrl-C or a signal to dasa-worker's group lets it finish. */
		(void) setpgid(0, 0);
#ifdef __linux__
		/* If dasa-worker dies, its claim is released: the command should stop too. */
		(void) prctl(PR_SET_PDEATHSIG, SIGTERM);
		if (getppid() != parent)
			_exit(127);
#endif
		if (dup2(in[0], 0) < 0 || dup2(out[1], 1) < 0 || dup2(err[1], 2) < 0)
			_exit(127);
		child_setenv("DASA_TASK_ID", s->task.id);
		child_setenv("DASA_FUNCTION", s->task.function);
		snprintf(num, sizeof(num), "%d", s->task.attempt);
		child_setenv("DASA_ATTEMPT", num);
		snprintf(num, sizeof(num), "%lld", s->task.version);
		child_setenv("DASA_VERSION", num);
		child_setenv("DASA_QUEUE", cfg->queue);
		child_setenv("DASA_WORKER", worker);
		execvp(cfg->command[0], cfg->command);
		fprintf(stderr, "dasa-worker: could not run \"%s\": %s\n", cfg->command[0], strerror(errno));
		_exit(127);
	}
	(void) setpgid(pid, pid);
	close(in[0]);
	close(out[1]);
	close(err[1]);
	s->pid = pid;
	s->in_fd = in[1];
	s->out_fd = out[0];
	s->err_fd = err[0];
	set_nonblocking(s->in_fd);
	set_nonblocking(s->out_fd);
	set_nonblocking(s->err_fd);
	return 0;

fail:
	saved = errno;
	for (int i = 0; i < 2; i++)
	{
		close_fd(&in[i]);
		close_fd(&out[i]);
		close_fd(&err[i]);
	}
	errno = saved;
	return -1;
}

static void
slot_clear(Slot *s)
{
	free(s->task.id);
	free(s->task.function);
	free(s->task.args);
	buf_free(&s->input);
	buf_free(&s->out);
	buf_free(&s->err);
	memset(s, 0, sizeof(*s));
	s->in_fd = s->out_fd = s->err_fd = -1;
}

/* Start a claimed task in free slot s (taking over the task's strings). */
static void
start_task(Slot *s, dasa_task *task, const Config *cfg, const char *worker)
{
	slot_clear(s);
	s->task = *task;
	memset(task, 0, sizeof(*task));
	s->used = 1;
	buf_puts(&s->input, s->task.args);
	buf_puts(&s->input, "\n");
	s->started = now_ms();
	s->deadline = cfg->timeout_ms > 0 ? s->started + cfg->timeout_ms : 0;
	if (verbose)
		logmsg("task %s: attempt %d of %s", s->task.id, s->task.attempt, s->task.function);
	if (spawn(s, cfg, worker) != 0)
	{
		char		message[256];

		snprintf(message, sizeof(message), "dasa-worker could not start the command: %s", strerror(errno));
		logmsg("task %s: %s", s->task.id, message);
		push_failure(&s->task, message, NULL, 0, NULL);
		slot_clear(s);
	}
}

/* Read what fd has (at most a few reads); returns 0 at EOF or on error (fd closed). */
static int
read_some(Slot *s, int *fd, int is_err, int max_reads)
{
	char		chunk[65536];

	for (int i = 0; i < max_reads; i++)
	{
		ssize_t		n = read(*fd, chunk, sizeof(chunk));

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return 1;
		if (n <= 0)
		{
			close_fd(fd);
			return 0;
		}
		if (is_err)
		{
			buf_append(&s->err, chunk, (size_t) n);
			if (s->err.len > 2 * ERROR_TAIL)
			{
				memmove(s->err.data, s->err.data + s->err.len - ERROR_TAIL, ERROR_TAIL);
				s->err.len = ERROR_TAIL;
				s->err.data[s->err.len] = '\0';
				s->err_truncated = 1;
			}
		}
		else if (!s->out_overflow)
		{
			if (s->out.len + (size_t) n > MAX_OUTPUT)
			{
				s->out_overflow = 1;
				buf_free(&s->out);
			}
			else
				buf_append(&s->out, chunk, (size_t) n);
		}
	}
	return 1;
}

static void
write_some(Slot *s)
{
	while (s->in_fd >= 0)
	{
		ssize_t		n;

		if (s->input_off == s->input.len)
		{
			close_fd(&s->in_fd);
			return;
		}
		n = write(s->in_fd, s->input.data + s->input_off, s->input.len - s->input_off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		if (n <= 0)
		{
			/* EPIPE: the command does not read its input; that is its business. */
			close_fd(&s->in_fd);
			return;
		}
		s->input_off += (size_t) n;
	}
}

/* The trimmed tail of standard error (UTF-8 cut at a character boundary), to free. */
static char *
error_tail(Slot *s)
{
	size_t		start = 0;
	size_t		end = s->err.len;
	Buf			b = {0};

	if (end > ERROR_TAIL)
	{
		start = end - ERROR_TAIL;
		s->err_truncated = 1;
	}
	if (s->err_truncated)
		while (start < end && ((unsigned char) s->err.data[start] & 0xC0) == 0x80)
			start++;
	while (start < end && is_space(s->err.data[start]))
		start++;
	while (end > start && is_space(s->err.data[end - 1]))
		end--;
	if (s->err_truncated && end > start)
		buf_puts(&b, "...");
	if (end > start)
		buf_append(&b, s->err.data + start, end - start);
	else
		buf_puts(&b, "");
	return b.data;
}

/* The command of s has exited and its output is read: queue its result, free s. */
static void
finish_task(Slot *s)
{
	int			status = s->status;
	char	   *err = error_tail(s);
	char		message[256];
	long long	ms = now_ms() - s->started;

	if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
	{
		if (s->out_overflow)
		{
			snprintf(message, sizeof(message), "the command's output exceeds %d bytes", MAX_OUTPUT);
			push_failure(&s->task, message, NULL, 0, NULL);
		}
		else
			push_result(&s->task, OUTCOME_COMPLETE, s->out.data ? s->out.data : "", s->out.len);
		if (verbose)
			logmsg("task %s: the command succeeded in %lld ms", s->task.id, ms);
	}
	else
	{
		const char *key = WIFEXITED(status) ? "exit_code" : "signal";
		int			value = WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status);

		if (s->give_back)
		{
			push_result(&s->task, OUTCOME_RELEASE, "", 0);
			logmsg("task %s: %s; released", s->task.id, s->why);
		}
		else if (s->why != NULL)
		{
			push_failure(&s->task, s->why, key, value, err);
			logmsg("task %s: %s", s->task.id, s->why);
		}
		else
		{
			if (err[0] == '\0')
				snprintf(message, sizeof(message), WIFEXITED(status) ? "the command exited with status %d" :
						 "the command was killed by signal %d", value);
			push_failure(&s->task, err[0] != '\0' ? err : message, key, value, NULL);
			if (verbose)
				logmsg("task %s: the command failed (%s %d) in %lld ms", s->task.id, key, value, ms);
		}
	}
	free(err);
	slot_clear(s);
}

/* Reap exited commands; read what they left in their pipes, and finish them. */
static void
reap(Slot *slots, int n)
{
	for (;;)
	{
		int			status;
		pid_t		pid = waitpid(-1, &status, WNOHANG);

		if (pid < 0 && errno == EINTR)
			continue;
		if (pid <= 0)
			return;
		for (int i = 0; i < n; i++)
		{
			Slot	   *s = &slots[i];

			if (!s->used || s->pid != pid)
				continue;
			s->reaped = 1;
			s->status = status;
			/* Everything it wrote is in the pipes (a process it left behind may hold them open). */
			if (s->out_fd >= 0)
				read_some(s, &s->out_fd, 0, 1024);
			if (s->err_fd >= 0)
				read_some(s, &s->err_fd, 1, 1024);
			close_fd(&s->in_fd);
			close_fd(&s->out_fd);
			close_fd(&s->err_fd);
			finish_task(s);
		}
	}
}

static void
signal_command(Slot *s, int signo)
{
	if (kill(-s->pid, signo) != 0)
		(void) kill(s->pid, signo);
}

/* ---- options ---- */

static void
usage(FILE *f)
{
	fprintf(f,
			"usage: dasa-worker --queue QUEUE [OPTION]... -- COMMAND [ARG]...\n"
			"\n"
			"Claims the tasks of the dasa queue QUEUE and runs COMMAND once per task.\n"
			"The command's standard input is the task's arguments (JSON, and a newline);\n"
			"its environment has DASA_TASK_ID, DASA_FUNCTION, DASA_ATTEMPT (1 on the\n"
			"first), DASA_VERSION, DASA_QUEUE and DASA_WORKER.\n"
			"  exit status 0: its standard output resolves the task: JSON as it is;\n"
			"                 output that is not JSON resolves as a JSON string (less\n"
			"                 its trailing newlines); no output, as null\n"
			"  other status:  the attempt fails with the error {\"message\": the end of\n"
			"                 its standard error (8 kB at most), \"exit_code\": N} (or\n"
			"                 \"signal\": N), retried as the function's policy says\n"
			"A task a command runs on may run again if dasa-worker loses it (its\n"
			"connection or its process dies): handlers should be idempotent. If\n"
			"dasa-worker dies, the server releases its tasks within seconds and its\n"
			"commands get SIGTERM.\n"
			"\n"
			"Options:\n"
			"  --dsn DSN            libpq connection string or URI (default: the PG*\n"
			"                       environment variables)\n"
			"  --queue QUEUE        the queue to work (required)\n"
			"  --concurrency N      commands running at once (default 1)\n"
			"  --name NAME          worker name, unique among running workers\n"
			"                       (default HOSTNAME-PID)\n"
			"  --lease SECONDS      lease of each claim, renewed every third of it while\n"
			"                       the command runs (default 30)\n"
			"  --poll SECONDS       look for tasks this often when no notification\n"
			"                       comes (default 5)\n"
			"  --timeout SECONDS    stop a command that runs longer (SIGTERM to its\n"
			"                       process group, SIGKILL 5 s later) and fail the\n"
			"                       attempt (default: no limit)\n"
			"  --grace SECONDS      on SIGTERM or SIGINT, how long running commands may\n"
			"                       take to finish (default 30)\n"
			"  -v, --verbose        log each task\n"
			"  -h, --help           show this and exit\n"
			"\n"
			"On SIGTERM or SIGINT dasa-worker claims no more tasks, lets the running\n"
			"commands finish (for --grace at most: then it stops them and gives\n"
			"their tasks back, due again with no attempt spent), reports their\n"
			"results and exits 0. A second signal stops the commands at once. A lost\n"
			"connection is made again (100 ms to 5 s apart) while the commands go on\n"
			"running.\n"
			"Exit status: 0 after a signal, 1 on an internal error, 2 on a usage error.\n");
}

static void
usage_error(const char *fmt,...)
{
	va_list		ap;

	fprintf(stderr, "dasa-worker: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\nTry \"dasa-worker --help\".\n");
	exit(2);
}

static long long
parse_seconds(const char *opt, const char *value, double min, double max)
{
	char	   *end;
	double		d;

	errno = 0;
	d = strtod(value, &end);
	if (errno != 0 || end == value || *end != '\0' || !isfinite(d) || d < min || d > max)
		usage_error("%s must be a number of seconds between %g and %g, not \"%s\"", opt, min, max, value);
	return (long long) llround(d * 1000);
}

static void
parse_options(int argc, char **argv, Config *cfg)
{
	int			i;

	for (i = 1; i < argc; i++)
	{
		const char *arg = argv[i];
		const char *value = NULL;
		char		opt[64];
		const char *eq;

		if (strcmp(arg, "--") == 0)
		{
			i++;
			break;
		}
		if (strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0)
		{
			usage(stdout);
			exit(0);
		}
		if (strcmp(arg, "-v") == 0 || strcmp(arg, "--verbose") == 0)
		{
			verbose = 1;
			continue;
		}
		if (strncmp(arg, "--", 2) != 0)
			usage_error("unexpected argument \"%s\" (the command comes after \"--\")", arg);
		eq = strchr(arg, '=');
		snprintf(opt, sizeof(opt), "%.*s", eq ? (int) (eq - arg) : (int) strlen(arg), arg);
		if (strcmp(opt, "--dsn") != 0 && strcmp(opt, "--queue") != 0 && strcmp(opt, "--concurrency") != 0 &&
			strcmp(opt, "--name") != 0 && strcmp(opt, "--lease") != 0 && strcmp(opt, "--poll") != 0 &&
			strcmp(opt, "--timeout") != 0 && strcmp(opt, "--grace") != 0)
			usage_error("unknown option \"%s\"", opt);
		if (eq != NULL)
			value = eq + 1;
		else if (i + 1 < argc)
			value = argv[++i];
		else
			usage_error("option %s needs a value", opt);
		if (strcmp(opt, "--dsn") == 0)
			cfg->dsn = value;
		else if (strcmp(opt, "--queue") == 0)
			cfg->queue = value;
		else if (strcmp(opt, "--name") == 0)
			cfg->name = value;
		else if (strcmp(opt, "--concurrency") == 0)
		{
			char	   *end;
			long		n;

			errno = 0;
			n = strtol(value, &end, 10);
			if (errno != 0 || end == value || *end != '\0' || n < 1 || n > MAX_CONCURRENCY)
				usage_error("--concurrency must be an integer between 1 and %d, not \"%s\"", MAX_CONCURRENCY, value);
			cfg->concurrency = (int) n;
		}
		else if (strcmp(opt, "--lease") == 0)
			cfg->lease_ms = parse_seconds(opt, value, 1, 86400);
		else if (strcmp(opt, "--poll") == 0)
			cfg->poll_ms = parse_seconds(opt, value, 0.01, 86400);
		else if (strcmp(opt, "--timeout") == 0)
			cfg->timeout_ms = parse_seconds(opt, value, 0.001, 31 * 86400.0);
		else if (strcmp(opt, "--grace") == 0)
			cfg->grace_ms = parse_seconds(opt, value, 0, 31 * 86400.0);
	}
	if (cfg->queue == NULL || cfg->queue[0] == '\0')
		usage_error("--queue is required");
	if (cfg->name != NULL && cfg->name[0] == '\0')
		usage_error("--name must not be empty");
	if (i >= argc)
		usage_error("no command: give it after \"--\"");
	cfg->command = argv + i;
}

/* ---- the loop ---- */

int
main(int argc, char **argv)
{
	Config		cfg = {.dsn = "", .concurrency = 1, .lease_ms = 30000, .poll_ms = 5000, .grace_ms = 30000};
	char		default_name[300];
	const char *worker;
	dasa_client *c;
	Slot	   *slots;
	struct pollfd *pfds;
	int			nfds_max;
	int			connected = 0;
	int			listening = 0;
	int			want_claim = 1;
	int			stopping = 0;
	sig_atomic_t stops_seen = 0;
	long long	backoff = BACKOFF_MIN_MS;
	long long	reconnect_at = 0;
	long long	poll_at = 0;
	long long	heartbeat_at = 0;
	long long	grace_at = 0;
	long long	flush_until = 0;
	Limiter		conn_log = {{0}, 0};
	Limiter		claim_log = {{0}, 0};
	Limiter		beat_log = {{0}, 0};

	parse_options(argc, argv, &cfg);
	if (cfg.name == NULL)
	{
		char		host[256];

		if (gethostname(host, sizeof(host)) != 0)
			snprintf(host, sizeof(host), "localhost");
		host[sizeof(host) - 1] = '\0';
		snprintf(default_name, sizeof(default_name), "%s-%d", host, (int) getpid());
		cfg.name = default_name;
	}
	worker = cfg.name;
	setup_signals();

	slots = calloc(cfg.concurrency, sizeof(Slot));
	nfds_max = 2 + 3 * cfg.concurrency;
	pfds = calloc(nfds_max, sizeof(struct pollfd));
	if (slots == NULL || pfds == NULL)
		out_of_memory();
	for (int i = 0; i < cfg.concurrency; i++)
		slot_clear(&slots[i]);

	c = dasa_client_connect(cfg.dsn, worker);
	if (c == NULL)
		out_of_memory();
	connected = dasa_client_connected(c);
	if (connected)
		logmsg("worker \"%s\" connected; working queue \"%s\" with %d slot%s", worker, cfg.queue,
			   cfg.concurrency, cfg.concurrency == 1 ? "" : "s");
	else
	{
		log_limited(&conn_log, "could not connect", dasa_client_error(c));
		reconnect_at = now_ms() + backoff;
	}

	for (;;)
	{
		long long	now = now_ms();
		int			running = 0;
		int			nfds = 0;
		int			sock;
		long long	timeout;
		int			r;

		/* Signals. */
		if (stop_signals != stops_seen)
		{
			stops_seen = stop_signals;
			if (!stopping)
			{
				stopping = 1;
				grace_at = now + cfg.grace_ms;
				logmsg("stopping: claiming no more tasks");
			}
			else
			{
				grace_at = now;
				logmsg("stopping now: the running commands are sent SIGTERM");
			}
		}
		if (child_exited)
		{
			child_exited = 0;
			reap(slots, cfg.concurrency);
		}

		/* Timeouts and stopping: SIGTERM, then SIGKILL. */
		for (int i = 0; i < cfg.concurrency; i++)
		{
			Slot	   *s = &slots[i];

			if (!s->used)
				continue;
			running++;
			if (s->term_at == 0 && s->deadline != 0 && now >= s->deadline)
			{
				static char why[128];

				snprintf(why, sizeof(why), "the command timed out after %.3g s", cfg.timeout_ms / 1000.0);
				s->why = why;
			}
			else if (s->term_at == 0 && stopping && now >= grace_at)
			{
				s->why = "dasa-worker stopped before the command finished";
				s->give_back = 1;
			}
			if (s->term_at == 0 && s->why != NULL)
			{
				signal_command(s, SIGTERM);
				s->term_at = now;
			}
			else if (s->term_at != 0 && !s->killed && now >= s->term_at + KILL_AFTER_MS)
			{
				signal_command(s, SIGKILL);
				s->killed = 1;
			}
		}

		/* The connection. */
		if (!connected && now >= reconnect_at)
		{
			if (dasa_client_reconnect(c) == DASA_OK)
			{
				logmsg("connected again");
				conn_log.last[0] = '\0';
				connected = 1;
				backoff = BACKOFF_MIN_MS;
				want_claim = 1;
				heartbeat_at = now;		/* rebind the claims held to this session */
			}
			else
			{
				log_limited(&conn_log, "could not connect", dasa_client_error(c));
				reconnect_at = now + backoff;
				backoff = backoff * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : backoff * 2;
			}
		}
		if (connected && !listening && (want_claim || now >= poll_at))
		{
			r = dasa_client_listen(c, cfg.queue);
			if (r == DASA_OK)
				listening = 1;
			else if (r != DASA_ERR_CONNECTION)
				log_limited(&claim_log, "could not listen for the queue", dasa_client_error(c));
		}
		if (connected && dasa_client_connected(c) && running > 0 && now >= heartbeat_at)
		{
			r = dasa_client_heartbeat(c, NULL);
			if (r != DASA_OK && r != DASA_ERR_CONNECTION)
				log_limited(&beat_log, "heartbeat", dasa_client_error(c));
			heartbeat_at = now + cfg.lease_ms / 3;
		}
		if (connected && dasa_client_connected(c))
			flush_results(c);
		if (connected && dasa_client_connected(c) && !stopping && running < cfg.concurrency &&
			(want_claim || now >= poll_at))
		{
			dasa_task  *tasks = NULL;
			int			n = 0;
			int			free_slots = cfg.concurrency - running;

			r = dasa_client_claim(c, cfg.queue, free_slots, (int) cfg.lease_ms, &tasks, &n);
			poll_at = now + cfg.poll_ms;
			if (r == DASA_OK)
			{
				claim_log.last[0] = '\0';
				want_claim = n == free_slots;
				for (int i = 0, k = 0; i < cfg.concurrency && k < n; i++)
					if (!slots[i].used)
					{
						start_task(&slots[i], &tasks[k++], &cfg, worker);
						if (slots[i].used)
							running++;
					}
				if (n > 0 && running > 0 && heartbeat_at < now)
					heartbeat_at = now + cfg.lease_ms / 3;
				dasa_tasks_free(tasks, n);
			}
			else
			{
				want_claim = 0;
				if (r != DASA_ERR_CONNECTION)
					log_limited(&claim_log, "could not claim", dasa_client_error(c));
			}
		}
		if (connected && dasa_client_connected(c))
		{
			r = dasa_client_consume(c);
			if (r > 0)
				want_claim = 1;
		}
		if (connected && !dasa_client_connected(c))
		{
			log_limited(&conn_log, "the connection was lost", dasa_client_error(c));
			connected = 0;		/* (the client LISTENs again when it reconnects) */
			backoff = BACKOFF_MIN_MS;
			reconnect_at = now + backoff;
			continue;
		}

		/* Done? */
		if (stopping && running == 0)
		{
			if (results == NULL)
				break;
			if (flush_until == 0)
				flush_until = now + FLUSH_AFTER_STOP_MS;
			else if (now >= flush_until)
			{
				logmsg("could not report %s results before stopping (the server releases their tasks)",
					   results->next ? "some" : "a");
				break;
			}
		}

		/* Wait for something to do. */
		timeout = 60000;
		if (!connected)
			timeout = reconnect_at - now;
		else if (!stopping && running < cfg.concurrency)
			timeout = want_claim ? 0 : poll_at - now;
		if (connected && running > 0 && heartbeat_at - now < timeout)
			timeout = heartbeat_at - now;
		if (stopping && running > 0 && grace_at - now < timeout && grace_at > now)
			timeout = grace_at - now;
		if (flush_until != 0 && flush_until - now < timeout)
			timeout = flush_until - now;
		for (int i = 0; i < cfg.concurrency; i++)
		{
			Slot	   *s = &slots[i];

			if (!s->used)
				continue;
			if (s->term_at == 0 && s->deadline != 0 && s->deadline - now < timeout)
				timeout = s->deadline - now;
			if (s->term_at != 0 && !s->killed && s->term_at + KILL_AFTER_MS - now < timeout)
				timeout = s->term_at + KILL_AFTER_MS - now;
		}
		if (timeout < 0)
			timeout = 0;

		pfds[nfds++] = (struct pollfd) {.fd = signal_pipe[0], .events = POLLIN};
		sock = connected ? dasa_client_socket(c) : -1;
		if (sock >= 0)
			pfds[nfds++] = (struct pollfd) {.fd = sock, .events = POLLIN};
		for (int i = 0; i < cfg.concurrency; i++)
		{
			Slot	   *s = &slots[i];

			if (!s->used)
				continue;
			if (s->in_fd >= 0)
				pfds[nfds++] = (struct pollfd) {.fd = s->in_fd, .events = POLLOUT};
			if (s->out_fd >= 0)
				pfds[nfds++] = (struct pollfd) {.fd = s->out_fd, .events = POLLIN};
			if (s->err_fd >= 0)
				pfds[nfds++] = (struct pollfd) {.fd = s->err_fd, .events = POLLIN};
		}
		r = poll(pfds, nfds, (int) timeout);
		if (r < 0)
		{
			if (errno == EINTR)
				continue;
			logmsg("poll: %s", strerror(errno));
			break;
		}
		if (r == 0)
			continue;
		if (pfds[0].revents)
		{
			char		drain[64];

			while (read(signal_pipe[0], drain, sizeof(drain)) > 0)
				;
		}
		/* The socket: consumed at the top of the loop. The commands' pipes: */
		for (int k = 1; k < nfds; k++)
		{
			if (pfds[k].revents == 0 || pfds[k].fd == sock)
				continue;
			for (int i = 0; i < cfg.concurrency; i++)
			{
				Slot	   *s = &slots[i];

				if (!s->used)
					continue;
				if (pfds[k].fd == s->in_fd)
					write_some(s);
				else if (pfds[k].fd == s->out_fd)
					read_some(s, &s->out_fd, 0, 4);
				else if (pfds[k].fd == s->err_fd)
					read_some(s, &s->err_fd, 1, 4);
				else
					continue;
				break;
			}
		}
	}

	if (stopping)
		logmsg("stopped");
	while (results != NULL)
		pop_result();
	for (int i = 0; i < cfg.concurrency; i++)
		slot_clear(&slots[i]);
	free(slots);
	free(pfds);
	dasa_client_free(c);
	close(signal_pipe[0]);
	close(signal_pipe[1]);
	return 0;
}
