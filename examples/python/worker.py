#!/usr/bin/python3
"""A dasa external worker in Python with psycopg 3.

Claims tasks of a queue and, for each, records its effect and completes it
in one transaction. Connects with DATABASE_URL, else the PG* variables.
usage: worker.py QUEUE [--name NAME] [--batch N] [--poll SECONDS] [--drain SECONDS]
"""
import argparse, os, select, signal, socket, threading, time
import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

LOST = "DA008"  # the claim is gone (its lease ran out): another worker has the task now

cli = argparse.ArgumentParser()
cli.add_argument("queue")
cli.add_argument("--name", default=f"py-{socket.gethostname()}-{os.getpid()}")
cli.add_argument("--batch", type=int, default=10, help="most tasks per claim")
cli.add_argument("--poll", type=float, default=1.0, help="longest wait for a NOTIFY")
cli.add_argument("--drain", type=float, help="exit once the queue has been empty this long")
opts = cli.parse_args()


def handle(conn, task_id, args):
    """The example's work: an effect in this database, and the task's result."""
    if args.get("fail"):
        raise RuntimeError("the task asked to fail")
    conn.execute("INSERT INTO example_effects (task_id, worker) VALUES (%s, %s)",
                 (task_id, opts.name))
    return {"square": args["n"] ** 2}


def run(conn, task_id, args, version):
    try:
        with conn.transaction():  # the effect and the result commit together, or neither
            value = handle(conn, task_id, args)
            conn.execute("SELECT dasa.complete(%s, %s, %s)", (task_id, version, Jsonb(value)))
    except Exception as e:
        if getattr(e, "sqlstate", None) == LOST:
            return
        try:  # dasa retries the task after a backoff, or rejects it after its last attempt
            conn.execute("SELECT dasa.fail(%s, %s, %s)",
                         (task_id, version, Jsonb({"message": str(e)})))
        except psycopg.Error as e2:
            if e2.sqlstate != LOST:
                raise


stopping, notified = threading.Event(), threading.Event()
signal.signal(signal.SIGTERM, lambda *_: stopping.set())
signal.signal(signal.SIGINT, lambda *_: stopping.set())
signal_r, signal_w = socket.socketpair()  # so that a signal ends the wait at once
signal_w.setblocking(False)
signal.set_wakeup_fd(signal_w.fileno())

with psycopg.connect(os.environ.get("DATABASE_URL", ""), autocommit=True) as conn:
    conn.add_notify_handler(lambda _: notified.set())
    channel = conn.execute("SELECT dasa.queue_channel(%s)", (opts.queue,)).fetchone()[0]
    conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
    last_work = time.monotonic()
    while not stopping.is_set():
        notified.clear()
        tasks = conn.execute("SELECT id, args, version FROM dasa.claim(%s, %s, %s)",
                             (opts.queue, opts.name, opts.batch)).fetchall()
        for task_id, args, version in tasks:  # a signal lets the batch finish
            run(conn, task_id, args, version)
        if tasks:
            last_work = time.monotonic()
            continue
        wait = opts.poll
        if opts.drain is not None:
            wait = min(wait, last_work + opts.drain - time.monotonic())
            if wait <= 0:
                break
        if not (notified.is_set() or stopping.is_set()):  # until a NOTIFY, the poll timeout or a signal
            select.select([conn, signal_r], [], [], wait)
