-- One of 1,000 workers (each holding one claimed task) heartbeats.
\set w random(1, 1000)
SELECT dasa.heartbeat('hb-' || :w);
