/*
 * api.h: what dasa's SQL-callable wrappers share.
 *
 * The wrappers check their arguments, switch to the extension owner where
 * they write, and call the kernel (core/); the blocking waits of a plain
 * session (await, await_all, await_any, CALL dasa.call) live here too.
 */
#ifndef DASA_API_H
#define DASA_API_H

#include "core/core.h"

/* validate.c: checks on user input that raise clear errors */
extern char *dasa_check_id(FunctionCallInfo fcinfo, int argno);
extern int64 dasa_required_version(FunctionCallInfo fcinfo, int argno);
extern void dasa_check_id_length(int len);
extern TimestampTz dasa_check_timeout(FunctionCallInfo fcinfo, int argno,
									  const char *what, TimestampTz now);
extern Interval *dasa_check_interval(FunctionCallInfo fcinfo, int argno, const char *what);
extern char *dasa_check_function_name(FunctionCallInfo fcinfo, int argno);
extern Jsonb *dasa_check_args(FunctionCallInfo fcinfo, int argno);
extern Jsonb *dasa_check_tags(FunctionCallInfo fcinfo, int argno);
extern Jsonb *dasa_check_optional_payload(FunctionCallInfo fcinfo, int argno, const char *what);

typedef struct DasaInvokeArgs
{
	char	   *name;
	Jsonb	   *args;
	char	   *id;				/* NULL: a fresh one */
	Interval   *timeout;		/* NULL: the function's */
} DasaInvokeArgs;

extern void dasa_check_invoke_args(FunctionCallInfo fcinfo, DasaInvokeArgs *out);
extern TimestampTz dasa_check_start_at(FunctionCallInfo fcinfo, int argno);
extern int	dasa_check_priority(FunctionCallInfo fcinfo, int argno);

/* rows.c: statement results as the function's row-type result */
extern Datum dasa_row_as_promise(FunctionCallInfo fcinfo, const DasaRows *rows, uint64 row,
								 MemoryContext result_cxt);
extern Datum dasa_row_as_result(FunctionCallInfo fcinfo, const DasaRows *rows, uint64 row,
								MemoryContext result_cxt);
extern Datum dasa_new_promise_datum(FunctionCallInfo fcinfo, const char *id, Jsonb *param,
									Jsonb *tags, TimestampTz timeout_at,
									TimestampTz created_at, Oid owner, DasaContext *parent);

/* await.c */
typedef struct DasaAwaitRead
{
	DasaPromiseRead promise;
	bool		created_here;	/* inserted by the caller's own transaction */
} DasaAwaitRead;

extern Jsonb *dasa_await_internal(const char *id, TimestampTz wait_deadline);
extern void dasa_await_read(const char *id, DasaAwaitRead *read, MemoryContext keep);
extern Jsonb *dasa_settled_result(const char *id, const DasaPromiseRead *p);
extern void dasa_refuse_hopeless_wait(const char *id, const DasaAwaitRead *read);

#endif							/* DASA_API_H */
