"""An external handler working on its claimed task (dasa.enter_task): what
it invokes are the task's children. Prints one "description<TAB>got<TAB>expected"
line per check; 83_nesting.sh turns them into TAP."""
import sys
import psycopg

db = sys.argv[1]


def check(description, got, expected):
    print(f"{description}\t{got}\t{expected}", flush=True)


def connect():
    return psycopg.connect(dbname=db, autocommit=True)


def one(conn, sql, *args):
    return conn.execute(sql, args).fetchone()[0]


def sqlstate(conn, sql, *args):
    try:
        conn.execute(sql, args)
        return "no error"
    except psycopg.Error as e:
        return e.sqlstate


def claim(conn, queue, worker):
    for _ in range(200):
        row = conn.execute("SELECT id, version, attempt FROM dasa.claim(%s, %s, 1, '30 seconds')",
                           (queue, worker)).fetchone()
        if row:
            return row
        conn.execute("SELECT pg_sleep(0.05)")
    raise SystemExit(f"nothing to claim on {queue}")


admin, handler, other = connect(), connect(), connect()
task, version, attempt = None, None, None

admin.execute("SELECT dasa.invoke('trip', '{\"to\": \"Oslo\"}', 'trip-1', '1 hour')")
task, version, attempt = claim(handler, 'trips', 'h-1')
check("enter_task refuses a stale version", sqlstate(handler, "SELECT dasa.enter_task(%s, %s)", task, version - 1), "DA008")
check("enter_task refuses a role not allowed on the queue",
      other.execute("SET ROLE nest_stranger") and
      sqlstate(other, "SELECT dasa.enter_task(%s, %s)", task, version), "42501")
other.execute("RESET ROLE")
handler.execute("SELECT dasa.enter_task(%s, %s)", (task, version))
check("the entered task is the session's current invocation", one(handler, "SELECT dasa.current_invocation()"), task)

# An in-database child and an external child, named after the task, deadlines capped.
hotel = one(handler, "SELECT dasa.invoke('book_hotel', '{\"nights\": 2}')")
flight = one(handler, "SELECT dasa.invoke('book_flight', '{}', timeout => '1 day')")
check("children are named <task>.<n> in order", f"{hotel} {flight}", "trip-1.1 trip-1.2")
check("children are the task's, in its tree",
      one(admin, "SELECT string_agg(parent_id || '/' || root_id, ' ' ORDER BY id) FROM dasa.invocations WHERE id IN ('trip-1.1', 'trip-1.2')"),
      "trip-1/trip-1 trip-1/trip-1")
check("a child's deadline is capped at the task's",
      one(admin, "SELECT (SELECT timeout_at FROM dasa.promises WHERE id = 'trip-1.2') <= (SELECT timeout_at FROM dasa.promises WHERE id = 'trip-1')"),
      True)
check("a promise it creates is its child too",
      one(handler, "SELECT (dasa.create_promise('approval', '1 day')).parent_id"), "trip-1")
check("the handler awaits its in-database child", one(handler, "SELECT dasa.await(%s)::text", hotel), "200")

# The external child is worked by another worker while the handler waits for it.
child, child_version, _ = claim(other, 'flights', 'f-1')
check("the external child is claimable on its own queue", child, flight)
import threading
result = {}
def await_flight():
    handler_value = one(handler, "SELECT dasa.await(%s)::text", flight)
    result['value'] = handler_value
t = threading.Thread(target=await_flight)
t.start()
other.execute("SELECT dasa.complete(%s, %s, '\"SK123\"')", (child, child_version))
t.join(10)
check("the handler awaits its external child", result.get('value'), '"SK123"')
check("awaiting its own task is refused at once",
      sqlstate(handler, "SELECT dasa.await('trip-1')"), "DA006")

# The claim is lost (released); the re-run re-attaches to the same children.
handler.execute("SELECT dasa.release(%s, %s)", (task, version))
check("release leaves the task", one(handler, "SELECT dasa.current_invocation()"), None)
check("release refuses the same claim twice", sqlstate(handler, "SELECT dasa.release(%s, %s)", task, version), "DA008")
task2, version2, attempt2 = claim(handler, 'trips', 'h-2')
check("a released task is claimed again, with a new version and no attempt spent",
      f"{task2} {version2 > version} {attempt2}", f"trip-1 True {attempt}")
handler.execute("SELECT dasa.enter_task(%s, %s)", (task2, version2))
again = one(handler, "SELECT dasa.invoke('book_hotel', '{\"nights\": 2}')")
check("the re-run finds the child it started before", again, hotel)
check("... which ran once", one(admin, "SELECT count(*) FROM bookings"), 1)
check("... and the completed external child is not claimable again",
      one(other, "SELECT count(*) FROM dasa.claim('flights', 'f-1', 10)"), 0)
handler.execute("SELECT dasa.complete(%s, %s, '\"booked\"')", (task2, version2))
check("complete leaves the task", one(handler, "SELECT dasa.current_invocation()"), None)
check("after leaving, an invocation is a root again",
      one(handler, "SELECT (SELECT parent_id FROM dasa.invocations WHERE id = dasa.invoke('book_hotel', '{}', 'solo'))"), None)

# Cancelling the root reaches the children of an external task.
admin.execute("SELECT dasa.invoke('trip', '{}', 'trip-2')")
task, version, _ = claim(handler, 'trips', 'h-3')
handler.execute("SELECT dasa.enter_task(%s, %s)", (task, version))
slow = one(handler, "SELECT dasa.invoke('book_flight', '{}')")
admin.execute("SELECT dasa.cancel('trip-2')")
check("cancelling the task's root cancels its external child",
      one(admin, "SELECT state FROM dasa.promises WHERE id = %s", slow), "rejected_canceled")
check("... and the handler may no longer complete it",
      sqlstate(handler, "SELECT dasa.complete(%s, %s, '1')", task, version), "DA008")
check("leave_task says whether the session was in a task", one(handler, "SELECT dasa.leave_task()"), True)
check("leave_task again: in none", one(handler, "SELECT dasa.leave_task()"), False)
check("enter_task inside a dasa function is refused",
      one(admin, "SELECT dasa.invoke('enters', '{}', 'e-1')") and
      sqlstate(admin, "SELECT dasa.await('e-1', '20 seconds')") and
      one(admin, "SELECT value->>'sqlstate' FROM dasa.promises WHERE id = 'e-1'"), "0A000")
