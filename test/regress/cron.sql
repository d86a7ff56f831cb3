-- Cron expressions: what dasa.cron_next reads, what it refuses, and when
-- each form fires next (month ends, leap days, daylight saving time).
SET timezone = 'UTC';

CREATE FUNCTION pg_temp.refusal(expression text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE state text; detail text;
BEGIN
  PERFORM dasa.cron_next(expression, '2026-01-01 00:00+00');
  RETURN 'accepted';
EXCEPTION WHEN OTHERS THEN
  GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE, detail = PG_EXCEPTION_DETAIL;
  RETURN state || ': ' || detail;
END $$;

-- Each field, lists, ranges, steps and names.
SELECT e, dasa.cron_next(e, '2026-11-28 12:34:56+00') AS next
FROM (VALUES ('* * * * *'), ('*/5 * * * *'), ('7,19,41 * * * *'), ('10-12 * * * *'),
             ('10-30/7 * * * *'), ('40/7 * * * *'), ('0 */6 * * *'), ('0 9-17/4 * * *'),
             ('0 0 1 * *'), ('0 0 * * 0'), ('0 0 * * 7'), ('0 0 * * sun'), ('0 9 * * MON-FRI'),
             ('0 0 1 jan *'), ('0 0 1 JUL-sep *'), ('0 0 13 * 5'), ('0 0 */10 * *')) v(e);

-- Macros.
SELECT e, dasa.cron_next(e, '2026-11-28 12:34:56+00') AS next
FROM (VALUES ('@yearly'), ('@annually'), ('@monthly'), ('@weekly'), ('@daily'),
             ('@midnight'), ('@hourly'), ('  @Daily  ')) v(e);

-- Periods under a minute: multiples of the period, the same for everyone.
SELECT e, dasa.cron_next(e, '2026-11-28 12:34:56.5+00') AS next
FROM (VALUES ('1 second'), ('15 seconds'), ('30 seconds'), ('59 seconds'), ('20 sec')) v(e);

-- Month ends: the 31st fires only in months that have one; the 30th never in February.
SELECT dasa.cron_next('0 0 31 * *', '2026-01-31 00:00+00') AS after_jan_31,
       dasa.cron_next('0 0 30 * *', '2026-01-30 00:00+00') AS after_jan_30,
       dasa.cron_next('59 23 28-31 * *', '2026-02-28 23:59+00') AS after_feb_28,
       dasa.cron_next('0 0 1 * *', '2026-12-31 23:59:59+00') AS new_year;

-- Leap days: February 29th, every four years (2100 is not a leap year).
SELECT dasa.cron_next('0 12 29 2 *', '2026-01-01 00:00+00') AS next_leap_day,
       dasa.cron_next('0 12 29 2 *', '2028-02-29 12:00+00') AS the_one_after,
       dasa.cron_next('0 12 29 2 *', '2097-01-01 00:00+00') AS skips_2100;

-- Never: the 30th of February.
SELECT dasa.cron_next('0 0 30 2 *', '2026-01-01 00:00+00') IS NULL AS never;

-- Daylight saving time in a named time zone (America/New_York: clocks go
-- forward at 02:00 on 2026-03-08 and back at 02:00 on 2026-11-01). A
-- wall-clock time the change skips does not fire that day; one it repeats
-- fires once, the first time.
SELECT dasa.cron_next('30 2 * * *', '2026-03-08 00:00-05', 'America/New_York') AS skipped_0230,
       dasa.cron_next('30 3 * * *', '2026-03-08 00:00-05', 'America/New_York') AS after_the_jump,
       dasa.cron_next('30 1 * * *', '2026-11-01 00:00-04', 'America/New_York') AS repeated_first,
       dasa.cron_next('30 1 * * *', '2026-11-01 01:30-04', 'America/New_York') AS not_twice;
SELECT dasa.cron_next('0 9 * * *', '2026-03-07 15:00+00', 'America/New_York') AS nine_est,
       dasa.cron_next('0 9 * * *', '2026-03-08 15:00+00', 'America/New_York') AS nine_edt;
SELECT dasa.cron_next('0 0 * * *', '2026-06-01 00:00+00', 'Asia/Kolkata') AS half_hour_offset;
-- Periods in seconds are instants: no time zone changes them.
SELECT dasa.cron_next('10 seconds', '2026-03-08 06:59:55+00', 'America/New_York') AS period;
-- Every fire time over the fall-back night, hourly: 01:00 once.
SELECT dasa.cron_next('0 * * * *', t, 'America/New_York') AT TIME ZONE 'America/New_York' AS local_time
FROM (VALUES ('2026-11-01 04:30+00'::timestamptz), ('2026-11-01 05:00+00'), ('2026-11-01 05:30+00'),
             ('2026-11-01 06:00+00')) v(t);

-- Refused, with 22023 and a detail that names the field.
SELECT e, pg_temp.refusal(e)
FROM (VALUES (''), ('   '), ('* * * *'), ('* * * * * *'), ('60 * * * *'), ('* 24 * * *'),
             ('* * 0 * *'), ('* * 32 * *'), ('* * * 13 *'), ('* * * 0 *'), ('* * * * 8'),
             ('5-1 * * * *'), ('*/0 * * * *'), ('*/x * * * *'), ('1-/2 * * * *'), ('a * * * *'),
             ('* * * foo *'), ('* * * * mon-xyz'), ('1,,2 * * * *'), (',5 * * * *'), ('@reboot'), ('@every 5m'),
             ('0 seconds'), ('60 seconds'), ('90 seconds'), ('-1 * * * *'), ('1.5 * * * *')) v(e);

-- A time zone it does not know.
DO $$
BEGIN
  PERFORM dasa.cron_next('@daily', now(), 'Mars/Olympus_Mons');
EXCEPTION WHEN invalid_parameter_value THEN
  RAISE NOTICE 'refused: %', SQLERRM;
END $$;
