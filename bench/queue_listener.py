#!/usr/bin/python3
"""LISTEN on a queue's channel and read notifications for SECONDS; prints how
many came. usage: queue_listener.py QUEUE SECONDS"""
import select, sys, time
import psycopg

queue, seconds = sys.argv[1], float(sys.argv[2])
conn = psycopg.connect("dbname=bench", autocommit=True)
channel = conn.execute("SELECT dasa.queue_channel(%s)", (queue,)).fetchone()[0]
conn.execute(f'LISTEN "{channel}"')
print("listening", flush=True)
heard, end = 0, time.monotonic() + seconds
while time.monotonic() < end:
    select.select([conn.fileno()], [], [], 0.2)
    conn.pgconn.consume_input()
    while conn.pgconn.notifies() is not None:
        heard += 1
print(heard)
