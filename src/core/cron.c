/*
 * cron.c: cron expressions, and when they fire next.
 *
 * Three forms: five fields (minute hour day-of-month month day-of-week, each
 * a list of values, ranges a-b and steps /n, with '*' and English names for
 * months and days), a macro (@yearly, @monthly, @weekly, @daily, @hourly),
 * or 'N seconds' (1 to 59) for a period shorter than a minute.
 *
 * Five-field expressions match wall-clock times in a time zone: the search
 * walks wall-clock minutes (where there is no daylight saving time) and
 * then finds the instant of each. A time a clock change skips does not fire
 * that day; one it repeats fires once, the first time. Periods in seconds
 * are instants, multiples of the period since 2000-01-01 UTC, so that every
 * process computes the same firing times. Pure functions: no table access.
 */
#include "core/core.h"

#include <ctype.h>

#include "pgtime.h"
#include "utils/datetime.h"
#include "utils/timestamp.h"

#define CRON_HINT "A cron expression has five fields: minute (0-59), hour (0-23), day of month (1-31), month (1-12 or jan-dec) and day of week (0-7 or sun-sat, 0 and 7 are Sunday), each *, a value, a range a-b, a list a,b or a step */n or a-b/n; or a macro such as @daily; or 'N seconds' (1 to 59)."

/* Longest search for a next firing: past it, an expression is taken never to fire. */
#define SEARCH_YEARS 10

typedef struct CronField
{
	const char *name;
	int			low;
	int			high;
	const char *const *names;	/* indexed from low; NULL: numbers only */
} CronField;

static const char *const month_names[] = {"jan", "feb", "mar", "apr", "may", "jun",
"jul", "aug", "sep", "oct", "nov", "dec", NULL};
static const char *const day_names[] = {"sun", "mon", "tue", "wed", "thu", "fri", "sat", NULL};

static const CronField fields[5] = {
	{"minute", 0, 59, NULL},
	{"hour", 0, 23, NULL},
	{"day-of-month", 1, 31, NULL},
	{"month", 1, 12, month_names},
	{"day-of-week", 0, 7, day_names},
};

static const struct
{
	const char *macro;
	const char *fields;
}			macros[] = {
	{"@yearly", "0 0 1 1 *"}, {"@annually", "0 0 1 1 *"}, {"@monthly", "0 0 1 * *"},
	{"@weekly", "0 0 * * 0"}, {"@daily", "0 0 * * *"}, {"@midnight", "0 0 * * *"},
	{"@hourly", "0 * * * *"},
};

static void
refuse(const char *text, const char *detail)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("invalid cron expression \"%s\"", text),
			 errdetail_internal("%s", detail),
			 errhint(CRON_HINT)));
}

/* A value of field f at *p (a number, or a name), advancing *p. */
static int
field_value(const char *text, const CronField *f, const char *item, const char **p)
{
	if (isdigit((unsigned char) **p))
	{
		long		v = strtol(*p, (char **) p, 10);

		if (v < f->low || v > f->high)
			refuse(text, psprintf("The %s field \"%s\" has %ld, out of the range %d to %d.",
								  f->name, item, v, f->low, f->high));
		return (int) v;
	}
	for (int i = 0; f->names != NULL && f->names[i] != NULL; i++)
	{
		if (pg_strncasecmp(*p, f->names[i], 3) == 0 && !isalpha((unsigned char) (*p)[3]))
		{
			*p += 3;
			return f->low + i;
		}
	}
	refuse(text, psprintf("The %s field \"%s\" has \"%s\" where a %s was expected.",
						  f->name, item, *p, f->names ? "number or a name" : "number"));
	return 0;					/* not reached */
}

/* The set of values (bit i: value i) of one field's text. */
static uint64
parse_field(const char *text, const CronField *f, const char *item)
{
	uint64		set = 0;
	char	   *copy = pstrdup(item);
	char	   *save = NULL;

	if (item[0] == ',' || item[strlen(item) - 1] == ',' || strstr(item, ",,") != NULL)
		refuse(text, psprintf("The %s field \"%s\" has an empty item in its list.", f->name, item));
	for (char *part = strtok_r(copy, ",", &save); part != NULL; part = strtok_r(NULL, ",", &save))
	{
		const char *p = part;
		int			from = f->low,
					to = f->high,
					step = 1;

		if (*p == '*')
			p++;
		else
		{
			from = to = field_value(text, f, item, &p);
			if (*p == '-')
			{
				p++;
				to = field_value(text, f, item, &p);
				if (to < from)
					refuse(text, psprintf("The %s field \"%s\" has the range %d-%d, which runs backwards.",
										  f->name, item, from, to));
			}
			else if (*p == '/')
				to = f->high;	/* "a/n": from a to the end, every n */
		}
		if (*p == '/')
		{
			long		n;

			p++;
			n = isdigit((unsigned char) *p) ? strtol(p, (char **) &p, 10) : 0;
			if (n < 1 || n > f->high)
				refuse(text, psprintf("The %s field \"%s\" has a step that is not a number from 1 to %d.",
									  f->name, item, f->high));
			step = (int) n;
		}
		if (*p != '\0')
			refuse(text, psprintf("The %s field \"%s\" has \"%s\" that is not understood.",
								  f->name, item, p));
		for (int v = from; v <= to; v += step)
			set |= UINT64CONST(1) << v;
	}
	if (set == 0)
		refuse(text, psprintf("The %s field is empty.", f->name));
	return set;
}

/* 'N seconds' (or 'N second', 'N sec'): N, or 0 if text is not of that form. */
static int
seconds_form(const char *text, const char *s)
{
	const char *p = s;
	long		n;

	if (!isdigit((unsigned char) *p))
		return 0;
	n = strtol(p, (char **) &p, 10);
	while (isspace((unsigned char) *p))
		p++;
	if (pg_strcasecmp(p, "seconds") != 0 && pg_strcasecmp(p, "second") != 0 &&
		pg_strcasecmp(p, "secs") != 0 && pg_strcasecmp(p, "sec") != 0 && pg_strcasecmp(p, "s") != 0)
		return 0;
	if (n < 1 || n > 59)
		refuse(text, psprintf("A period in seconds must be from 1 to 59 seconds; %ld was given.", n));
	return (int) n;
}

static const char *
expand_macro(const char *text, const char *s)
{
	for (int i = 0; i < lengthof(macros); i++)
		if (pg_strcasecmp(s, macros[i].macro) == 0)
			return macros[i].fields;
	refuse(text, psprintf("\"%s\" is not a known macro (@yearly, @annually, @monthly, @weekly, @daily, @midnight, @hourly).", s));
	return NULL;				/* not reached */
}

/* Parse text into *cron; a clear error (22023) naming the wrong field otherwise. */
void
dasa_cron_parse(const char *text, DasaCron *cron)
{
	char	   *s;
	char	   *words[6];
	int			n = 0;
	char	   *save = NULL;
	uint64		sets[5];

	memset(cron, 0, sizeof(*cron));
	s = pstrdup(text);
	while (*s != '\0' && isspace((unsigned char) *s))
		s++;
	for (char *end = s + strlen(s); end > s && isspace((unsigned char) end[-1]);)
		*--end = '\0';
	if (*s == '\0')
		refuse(text, "The expression is empty.");
	if ((cron->every_seconds = seconds_form(text, s)) > 0)
		return;
	if (*s == '@')
		s = pstrdup(expand_macro(text, s));
	for (char *w = strtok_r(s, " \t\n\r", &save); w != NULL; w = strtok_r(NULL, " \t\n\r", &save))
	{
		if (n == 5)
			refuse(text, "It has more than five fields.");
		words[n++] = w;
	}
	if (n < 5)
		refuse(text, psprintf("It has %d field%s; five are needed.", n, n == 1 ? "" : "s"));
	for (int i = 0; i < 5; i++)
		sets[i] = parse_field(text, &fields[i], words[i]);
	cron->minutes = sets[0];
	cron->hours = (uint32) sets[1];
	cron->days = (uint32) sets[2];
	cron->months = (uint32) sets[3];
	cron->weekdays = (uint32) (sets[4] | ((sets[4] >> 7) & 1)) & 0x7f;	/* 7 is Sunday too */
	cron->any_day = words[2][0] == '*';
	cron->any_weekday = words[4][0] == '*';
}

/* Does the day y-m-d match? Both day fields restricted: either may match (as cron does). */
static bool
day_matches(const DasaCron *cron, int y, int m, int d)
{
	bool		by_date = (cron->days >> d) & 1;
	bool		by_weekday = (cron->weekdays >> j2day(date2j(y, m, d))) & 1;

	if (cron->any_day || cron->any_weekday)
		return by_date && by_weekday;
	return by_date || by_weekday;
}

static Timestamp
wall_clock(int y, int m, int d, int hour, int minute)
{
	return (Timestamp) (date2j(y, m, d) - POSTGRES_EPOCH_JDATE) * USECS_PER_DAY +
		(Timestamp) hour * USECS_PER_HOUR + (Timestamp) minute * USECS_PER_MINUTE;
}

/* The first wall-clock minute after t (naive, no zone) that the fields match. */
static Timestamp
next_wall_clock(const DasaCron *cron, Timestamp t, Timestamp limit)
{
	t = t - (t % USECS_PER_MINUTE + USECS_PER_MINUTE) % USECS_PER_MINUTE + USECS_PER_MINUTE;
	while (t <= limit)
	{
		int			jd = (int) (t / USECS_PER_DAY) + POSTGRES_EPOCH_JDATE;
		int			y,
					m,
					d,
					hour = (int) ((t % USECS_PER_DAY) / USECS_PER_HOUR),
					minute = (int) ((t % USECS_PER_HOUR) / USECS_PER_MINUTE);

		j2date(jd, &y, &m, &d);
		if (!((cron->months >> m) & 1))
			t = m == 12 ? wall_clock(y + 1, 1, 1, 0, 0) : wall_clock(y, m + 1, 1, 0, 0);
		else if (!day_matches(cron, y, m, d))
			t = (Timestamp) (jd + 1 - POSTGRES_EPOCH_JDATE) * USECS_PER_DAY;
		else if (!((cron->hours >> hour) & 1))
			t = wall_clock(y, m, d, hour, 0) + USECS_PER_HOUR;
		else if (!((cron->minutes >> minute) & 1))
			t += USECS_PER_MINUTE;
		else
			return t;
	}
	return DT_NOEND;
}

/* Wall-clock time of instant t in tz (naive). */
static Timestamp
wall_clock_of(TimestampTz t, pg_tz *tz)
{
	struct pg_tm tm;
	fsec_t		fsec;
	int			offset;
	Timestamp	wall;

	if (timestamp2tm(t, &offset, &tm, &fsec, NULL, tz) != 0 ||
		tm2timestamp(&tm, fsec, NULL, &wall) != 0)
		ereport(ERROR, (errcode(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE), errmsg("timestamp out of range")));
	return wall;
}

/* The first instant whose wall clock in tz reads wall; DT_NOBEGIN if a clock change skips it. */
static TimestampTz
instant_of(Timestamp wall, pg_tz *tz)
{
	struct pg_tm tm;
	fsec_t		fsec;
	int			offset;
	TimestampTz t;
	static const int64 earlier[] = {2 * USECS_PER_HOUR, USECS_PER_HOUR, 30 * USECS_PER_MINUTE};

	if (timestamp2tm(wall, NULL, &tm, &fsec, NULL, NULL) != 0)
		return DT_NOBEGIN;
	offset = DetermineTimeZoneOffset(&tm, tz);
	if (tm2timestamp(&tm, fsec, &offset, &t) != 0 || wall_clock_of(t, tz) != wall)
		return DT_NOBEGIN;
	for (int i = 0; i < lengthof(earlier); i++)
		if (wall_clock_of(t - earlier[i], tz) == wall)
			return t - earlier[i];	/* a repeated hour: its first pass */
	return t;
}

/*
 * The first firing of cron strictly after instant after, in time zone tz;
 * DT_NOEND if there is none within SEARCH_YEARS (e.g. "0 0 30 2 *").
 */
TimestampTz
dasa_cron_next(const DasaCron *cron, TimestampTz after, pg_tz *tz)
{
	Timestamp	wall;
	Timestamp	limit;

	if (cron->every_seconds > 0)
	{
		int64		period = (int64) cron->every_seconds * USECS_PER_SEC;
		int64		floor = after - ((after % period) + period) % period;

		return floor + period;
	}
	wall = wall_clock_of(after, tz);
	limit = wall + (Timestamp) SEARCH_YEARS * 366 * USECS_PER_DAY;
	while ((wall = next_wall_clock(cron, wall, limit)) != DT_NOEND)
	{
		TimestampTz t = instant_of(wall, tz);

		if (t != DT_NOBEGIN && t > after)
			return t;
	}
	return DT_NOEND;
}

/* The time zone called name, or a clear error (22023). */
pg_tz *
dasa_time_zone(const char *name)
{
	pg_tz	   *tz = pg_tzset(name);

	if (tz == NULL || name[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("time zone \"%s\" is not recognized", name),
				 errhint("Use a name from pg_timezone_names, such as 'UTC' or 'Europe/Paris'.")));
	return tz;
}
