/* catpend.c - a catalog view's pending single changes of one service (see
 * catpend.h).  Entries in arrival order (a forgotten one stays, dead);
 * the index is open addressing with linear probing over entry numbers,
 * at most half full, rebuilt from the live entries when it grows.
 * Owns: the entries, the index, the removal ids' chunks and the instance
 * references of pending puts (until regent_pend_sorted hands them over). */
#include "catpend.h"
#include "util.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define ID_CHUNK 4096 /* bytes: removal ids are copied into chunks this big (or one id's) */

typedef struct chunk {
	struct chunk *next;
	size_t used, cap;
	char text[];
} chunk;

struct regent_pend {
	regent_pend_ent *ents; /* arrival order */
	size_t n, cap, nlive;
	uint32_t *idx;         /* 0: empty, else 1 + an entry's number */
	size_t icap;           /* 0 or a power of two, > 2 x nlive */
	chunk *ids;            /* removal ids, newest chunk first */
};

static unsigned id_hash(const char *id)
{
	uint64_t x = regent_hash_str(REGENT_HASH_SEED, id);
	return (unsigned)(x ^ (x >> 32));
}

regent_pend *regent_pend_new(void)
{
	return regent_xcalloc(1, sizeof(regent_pend));
}

void regent_pend_free(regent_pend *p, bool refs)
{
	if (!p)
		return;
	for (size_t i = 0; refs && i < p->n; i++)
		if (p->ents[i].live)
			regent_inst_unref(p->ents[i].inst);
	while (p->ids) {
		chunk *c = p->ids;
		p->ids = c->next;
		free(c);
	}
	free(p->ents);
	free(p->idx);
	free(p);
}

size_t regent_pend_size(const regent_pend *p)
{
	return p ? p->nlive : 0;
}

/* The index cell holding id's entry, or the empty cell where it would go
 * (icap > 0). */
static size_t slot(const regent_pend *p, const char *id, unsigned h)
{
	size_t mask = p->icap - 1;
	for (size_t i = h & mask;; i = (i + 1) & mask) {
		uint32_t e = p->idx[i];
		if (!e)
			return i;
		const regent_pend_ent *en = &p->ents[e - 1];
		if (en->hash == h && strcmp(en->id, id) == 0)
			return i;
	}
}

static regent_pend_ent *find(const regent_pend *p, const char *id, unsigned h)
{
	if (!p->icap)
		return NULL;
	uint32_t e = p->idx[slot(p, id, h)];
	return e ? &p->ents[e - 1] : NULL;
}

bool regent_pend_get(const regent_pend *p, const char *id, regent_inst **inst)
{
	regent_pend_ent *en = p ? find(p, id, id_hash(id)) : NULL;
	*inst = en ? en->inst : NULL;
	return en != NULL;
}

/* Indexes the entries again in a table for `want` live ones. */
static void reindex(regent_pend *p, size_t want)
{
	size_t cap = 16;
	while (cap <= 2 * want)
		cap *= 2;
	free(p->idx);
	p->idx = regent_xcalloc(cap, sizeof(*p->idx));
	p->icap = cap;
	for (size_t i = 0; i < p->n; i++) {
		if (!p->ents[i].live)
			continue;
		size_t j = p->ents[i].hash & (cap - 1);
		while (p->idx[j])
			j = (j + 1) & (cap - 1);
		p->idx[j] = (uint32_t)(i + 1);
	}
}

/* A new live entry for id (not held). */
static regent_pend_ent *add(regent_pend *p, const char *id, unsigned h)
{
	if (2 * (p->nlive + 1) >= p->icap)
		reindex(p, p->nlive + 1);
	if (p->n == p->cap) {
		p->cap = p->cap ? 2 * p->cap : 16;
		p->ents = regent_xrealloc(p->ents, p->cap * sizeof(*p->ents));
	}
	regent_pend_ent *en = &p->ents[p->n++];
	*en = (regent_pend_ent){.id = id, .hash = h, .live = true};
	p->idx[slot(p, id, h)] = (uint32_t)p->n;
	p->nlive++;
	return en;
}

void regent_pend_put(regent_pend *p, regent_inst *in)
{
	unsigned h = id_hash(in->pub.id);
	regent_pend_ent *en = find(p, in->pub.id, h);
	if (!en)
		en = add(p, in->pub.id, h);
	else
		regent_inst_unref(en->inst);
	en->id = in->pub.id; /* the old instance's (or a removal's copy) goes */
	en->inst = in;
}

static const char *id_copy(regent_pend *p, const char *id)
{
	size_t len = strlen(id) + 1;
	chunk *c = p->ids;
	if (!c || c->cap - c->used < len) {
		size_t cap = len > ID_CHUNK ? len : ID_CHUNK;
		c = regent_xmalloc(sizeof(*c) + cap);
		c->used = 0;
		c->cap = cap;
		c->next = p->ids;
		p->ids = c;
	}
	char *s = c->text + c->used;
	memcpy(s, id, len);
	c->used += len;
	return s;
}

void regent_pend_remove(regent_pend *p, const char *id)
{
	unsigned h = id_hash(id);
	regent_pend_ent *en = find(p, id, h);
	if (en && !en->inst)
		return; /* already */
	const char *copy = id_copy(p, id);
	if (!en) {
		add(p, copy, h);
		return;
	}
	en->id = copy;
	regent_inst_unref(en->inst);
	en->inst = NULL;
}

void regent_pend_forget(regent_pend *p, const char *id)
{
	unsigned h = id_hash(id);
	if (!p->icap)
		return;
	size_t mask = p->icap - 1, i = slot(p, id, h);
	uint32_t e = p->idx[i];
	if (!e)
		return;
	regent_pend_ent *en = &p->ents[e - 1];
	regent_inst_unref(en->inst);
	en->inst = NULL;
	en->live = false;
	p->nlive--;
	/* empty the cell, shifting back the cells of its cluster that probed past it */
	p->idx[i] = 0;
	for (size_t j = (i + 1) & mask; p->idx[j]; j = (j + 1) & mask) {
		size_t home = p->ents[p->idx[j] - 1].hash & mask;
		bool stays = i <= j ? (i < home && home <= j) : (i < home || home <= j);
		if (!stays) {
			p->idx[i] = p->idx[j];
			p->idx[j] = 0;
			i = j;
		}
	}
}

static int cmp_ent(const void *a, const void *b)
{
	return strcmp(((const regent_pend_ent *)a)->id, ((const regent_pend_ent *)b)->id);
}

const regent_pend_ent *regent_pend_sorted(regent_pend *p, size_t *n)
{
	size_t w = 0;
	bool sorted = true;
	for (size_t i = 0; i < p->n; i++) {
		if (!p->ents[i].live)
			continue;
		if (w > 0 && sorted && strcmp(p->ents[w - 1].id, p->ents[i].id) > 0)
			sorted = false;
		p->ents[w++] = p->ents[i];
	}
	if (!sorted)
		qsort(p->ents, w, sizeof(*p->ents), cmp_ent);
	/* the index no longer matches the entries: the table only hands them over now */
	free(p->idx);
	p->idx = NULL;
	p->icap = 0;
	p->n = p->nlive = w;
	*n = w;
	return p->ents;
}
