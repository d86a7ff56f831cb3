/*
 * idset.c: sets of promise ids, and hash tables keyed by id.
 *
 * Ids vary in length (up to DASA_MAX_ID_BYTES), so tables are keyed by a
 * pointer to the string, hashed and compared by its content. A fan-out of
 * 100,000 children makes sets that size: a list searched for each id would
 * take quadratic time.
 */
#include "core/core.h"

#include "common/hashfn.h"
#include "utils/hsearch.h"

uint32
dasa_id_hash(const void *key, Size keysize)
{
	return string_hash(*(char *const *) key, DASA_MAX_ID_BYTES + 1);
}

int
dasa_id_match(const void *a, const void *b, Size keysize)
{
	return strcmp(*(char *const *) a, *(char *const *) b);
}

/* A hash table of entries of entrysize bytes that start with their id (char *), in the current memory context. */
HTAB *
dasa_id_table(const char *name, long size, Size entrysize)
{
	HASHCTL		ctl = {.keysize = sizeof(char *), .entrysize = entrysize,
		.hash = dasa_id_hash, .match = dasa_id_match, .hcxt = CurrentMemoryContext};

	return hash_create(name, Max(size, 16), &ctl,
					   HASH_ELEM | HASH_FUNCTION | HASH_COMPARE | HASH_CONTEXT);
}

/* Add id to the set (keeping the pointer, not a copy); true if it was not there. */
bool
dasa_idset_add(HTAB *set, const char *id)
{
	bool		found;

	(void) hash_search(set, &id, HASH_ENTER, &found);
	return !found;
}

bool
dasa_idset_contains(HTAB *set, const char *id)
{
	return hash_search(set, &id, HASH_FIND, NULL) != NULL;
}
