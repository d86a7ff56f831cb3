#!/usr/bin/python3
"""invoke commit acknowledged -> a LISTENing worker has the task (notified and
claimed), with an idle gap before each sample. Prints one line per sample:
notified_ms claimed_ms. usage: external_latency.py SAMPLES GAP_MS"""
import select, sys, time
import psycopg

samples, gap = int(sys.argv[1]), float(sys.argv[2]) / 1000
worker = psycopg.connect("dbname=bench", autocommit=True)
invoker = psycopg.connect("dbname=bench", autocommit=True)
channel = worker.execute("SELECT dasa.queue_channel('lat')").fetchone()[0]
worker.execute(f'LISTEN "{channel}"')
for i in range(samples):
    time.sleep(gap)
    invoker.execute("SELECT dasa.invoke('lat_fn', '{}', %s)", (f"lat-{i}",))
    acked = time.perf_counter()
    while True:  # (psycopg 3.1: no timeout on notifies(); read the socket ourselves)
        worker.pgconn.consume_input()
        if worker.pgconn.notifies() is not None:
            break
        select.select([worker.fileno()], [], [], 5)
    notified = time.perf_counter()
    rows = worker.execute("SELECT id, version FROM dasa.claim('lat', 'lat-w', 10)").fetchall()
    claimed = time.perf_counter()
    assert any(r[0] == f"lat-{i}" for r in rows), rows
    for task_id, version in rows:
        worker.execute("SELECT dasa.complete(%s, %s, '1')", (task_id, version))
    print(f"{(notified - acked) * 1000:.3f} {(claimed - acked) * 1000:.3f}")
