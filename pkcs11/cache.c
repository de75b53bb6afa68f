/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "cache.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "common/buffer.h"
#include "common/wire.h"

struct mslot {
        CK_SLOT_ID id;
        uint64_t tgen, ogen;
        bool si_ok, ti_ok;
        struct mcache_stamp si_st, ti_st;
        CK_SLOT_INFO si;
        CK_TOKEN_INFO ti;
        enum { OBJS_NONE, OBJS_OK, OBJS_UNAVAILABLE } objs_state;
        struct mcache_stamp objs_st;
        struct mcache_obj *objs;
        size_t nobjs;
        /* Mechanisms a C_SignInit of this connection was seen to accept on
         * the slot's token (valid for the epoch they were seen in). */
        CK_MECHANISM_TYPE sign_mechs[MCACHE_SIGN_MECHS];
        size_t nsign;
        uint64_t sign_epoch;
};

struct mcache {
        pthread_mutex_t lock;
        uint64_t epoch;
        struct mslot *slots;
        size_t nslots;
        /* Slot lists: [0] all slots, [1] with a token present. */
        bool list_ok[2];
        uint64_t list_epoch[2];
        CK_SLOT_ID *list[2];
        CK_ULONG nlist[2];
};

int mcache_new(struct mcache **ret) {
        struct mcache *c = calloc(1, sizeof *c);
        if (!c)
                return -ENOMEM;
        pthread_mutex_init(&c->lock, NULL);
        c->epoch = 1;
        *ret = c;
        return 0;
}

static void slot_drop_objects(struct mslot *s) {
        mcache_free_objects(s->objs, s->nobjs);
        s->objs = NULL;
        s->nobjs = 0;
        s->objs_state = OBJS_NONE;
}

void mcache_free(struct mcache *c) {
        if (!c)
                return;
        for (size_t i = 0; i < c->nslots; i++)
                slot_drop_objects(&c->slots[i]);
        free(c->slots);
        free(c->list[0]);
        free(c->list[1]);
        pthread_mutex_destroy(&c->lock);
        free(c);
}

/* Lock held.  NULL only when out of memory (nothing is then kept). */
static struct mslot *slot_get(struct mcache *c, CK_SLOT_ID id) {
        for (size_t i = 0; i < c->nslots; i++)
                if (c->slots[i].id == id)
                        return &c->slots[i];
        struct mslot *v = realloc(c->slots, (c->nslots + 1) * sizeof *v);
        if (!v)
                return NULL;
        c->slots = v;
        struct mslot *s = &c->slots[c->nslots++];
        memset(s, 0, sizeof *s);
        s->id = id;
        return s;
}

static struct mslot *slot_find(struct mcache *c, CK_SLOT_ID id) {
        for (size_t i = 0; i < c->nslots; i++)
                if (c->slots[i].id == id)
                        return &c->slots[i];
        return NULL;
}

void mcache_bump_all(struct mcache *c) {
        pthread_mutex_lock(&c->lock);
        c->epoch++;
        /* Nothing kept is valid any more: free the copies now. */
        for (size_t i = 0; i < c->nslots; i++) {
                c->slots[i].si_ok = c->slots[i].ti_ok = false;
                slot_drop_objects(&c->slots[i]);
        }
        c->list_ok[0] = c->list_ok[1] = false;
        pthread_mutex_unlock(&c->lock);
}

static void bump(struct mcache *c, CK_SLOT_ID slot, bool token, bool objects) {
        pthread_mutex_lock(&c->lock);
        struct mslot *s = slot_get(c, slot);
        if (!s) {
                /* Cannot record it: forget everything instead. */
                pthread_mutex_unlock(&c->lock);
                mcache_bump_all(c);
                return;
        }
        if (token) {
                s->tgen++;
                s->si_ok = s->ti_ok = false;
        }
        if (objects) {
                s->ogen++;
                slot_drop_objects(s);
        }
        pthread_mutex_unlock(&c->lock);
}

void mcache_bump_token(struct mcache *c, CK_SLOT_ID slot) {
        bump(c, slot, true, false);
}

void mcache_bump_objects(struct mcache *c, CK_SLOT_ID slot) {
        bump(c, slot, false, true);
}

void mcache_bump_slot(struct mcache *c, CK_SLOT_ID slot) {
        bump(c, slot, true, true);
}

static struct mcache_stamp stamp_locked(struct mcache *c, CK_SLOT_ID slot) {
        struct mcache_stamp st = { .epoch = c->epoch };
        struct mslot *s = slot_find(c, slot);
        if (s) {
                st.tgen = s->tgen;
                st.ogen = s->ogen;
        }
        return st;
}

struct mcache_stamp mcache_stamp(struct mcache *c, CK_SLOT_ID slot) {
        pthread_mutex_lock(&c->lock);
        struct mcache_stamp st = stamp_locked(c, slot);
        pthread_mutex_unlock(&c->lock);
        return st;
}

static bool stamp_eq(const struct mcache_stamp *a, const struct mcache_stamp *b) {
        return a->epoch == b->epoch && a->tgen == b->tgen && a->ogen == b->ogen;
}

bool mcache_stamp_valid(struct mcache *c, CK_SLOT_ID slot, const struct mcache_stamp *s) {
        pthread_mutex_lock(&c->lock);
        struct mcache_stamp now = stamp_locked(c, slot);
        pthread_mutex_unlock(&c->lock);
        return stamp_eq(&now, s);
}

/* ---- slots and tokens ---- */

bool mcache_get_slot_list(struct mcache *c, CK_BBOOL present, CK_SLOT_ID_PTR list, CK_ULONG_PTR count, CK_RV *rv) {
        int k = present ? 1 : 0;
        bool hit = false;
        pthread_mutex_lock(&c->lock);
        if (c->list_ok[k] && c->list_epoch[k] == c->epoch) {
                hit = true;
                CK_ULONG n = c->nlist[k];
                if (!list)
                        *rv = CKR_OK;
                else if (*count < n)
                        *rv = CKR_BUFFER_TOO_SMALL;
                else {
                        if (n)
                                memcpy(list, c->list[k], n * sizeof *list);
                        *rv = CKR_OK;
                }
                *count = n;
        }
        pthread_mutex_unlock(&c->lock);
        return hit;
}

void mcache_put_slot_list(struct mcache *c, const struct mcache_stamp *s, CK_BBOOL present, const CK_SLOT_ID *list,
                          CK_ULONG n) {
        int k = present ? 1 : 0;
        CK_SLOT_ID *copy = malloc((n ? n : 1) * sizeof *copy);
        if (!copy)
                return;
        if (n)
                memcpy(copy, list, n * sizeof *copy);
        pthread_mutex_lock(&c->lock);
        if (s->epoch == c->epoch) {
                free(c->list[k]);
                c->list[k] = copy;
                c->nlist[k] = n;
                c->list_epoch[k] = c->epoch;
                c->list_ok[k] = true;
                copy = NULL;
        }
        pthread_mutex_unlock(&c->lock);
        free(copy);
}

/* Token and slot info are valid while epoch and tgen hold. */
static bool info_valid(struct mcache *c, const struct mslot *s, const struct mcache_stamp *st) {
        return st->epoch == c->epoch && st->tgen == s->tgen;
}

/* Where a slot keeps one of its infos (its CK_SLOT_INFO, or its token's
 * CK_TOKEN_INFO): the value and its size, its stamp, whether there is one. */
struct info_ref {
        void *v;
        size_t size;
        struct mcache_stamp *st;
        bool *ok;
};

static struct info_ref slot_info_ref(struct mslot *s) {
        return (struct info_ref){ &s->si, sizeof s->si, &s->si_st, &s->si_ok };
}

static struct info_ref token_info_ref(struct mslot *s) {
        return (struct info_ref){ &s->ti, sizeof s->ti, &s->ti_st, &s->ti_ok };
}

/* Copies the info ref(slot) into ret if there is one still valid. */
static bool info_get(struct mcache *c, CK_SLOT_ID slot, struct info_ref (*ref)(struct mslot *), void *ret) {
        bool hit = false;
        pthread_mutex_lock(&c->lock);
        struct mslot *s = slot_find(c, slot);
        if (s) {
                struct info_ref r = ref(s);
                if (*r.ok && info_valid(c, s, r.st)) {
                        memcpy(ret, r.v, r.size);
                        hit = true;
                }
        }
        pthread_mutex_unlock(&c->lock);
        return hit;
}

/* Keeps i as the info ref(slot), stamped st, unless st is out of date. */
static void info_put(struct mcache *c, CK_SLOT_ID slot, struct info_ref (*ref)(struct mslot *),
                     const struct mcache_stamp *st, const void *i) {
        pthread_mutex_lock(&c->lock);
        struct mslot *s = slot_get(c, slot);
        if (s && info_valid(c, s, st)) {
                struct info_ref r = ref(s);
                memcpy(r.v, i, r.size);
                *r.st = *st;
                *r.ok = true;
        }
        pthread_mutex_unlock(&c->lock);
}

bool mcache_get_slot_info(struct mcache *c, CK_SLOT_ID slot, CK_SLOT_INFO *ret) {
        return info_get(c, slot, slot_info_ref, ret);
}

void mcache_put_slot_info(struct mcache *c, CK_SLOT_ID slot, const struct mcache_stamp *st, const CK_SLOT_INFO *i) {
        info_put(c, slot, slot_info_ref, st, i);
}

bool mcache_get_token_info(struct mcache *c, CK_SLOT_ID slot, CK_TOKEN_INFO *ret) {
        return info_get(c, slot, token_info_ref, ret);
}

void mcache_put_token_info(struct mcache *c, CK_SLOT_ID slot, const struct mcache_stamp *st,
                           const CK_TOKEN_INFO *i) {
        info_put(c, slot, token_info_ref, st, i);
}

/* ---- objects ---- */

void mcache_free_objects(struct mcache_obj *v, size_t n) {
        for (size_t i = 0; i < n; i++)
                nattrs_done(&v[i].attrs);
        free(v);
}

int mcache_parse_objects(const uint8_t *p, size_t n, struct mcache_obj **ret, size_t *ret_n) {
        struct nbuf b;
        uint32_t cnt;
        nbuf_init_const(&b, p, n);
        /* Each object takes at least 8 + 4 + 4 bytes. */
        if (!nbuf_get_u32(&b, &cnt) || cnt > WIRE_MAX_LIST || (size_t)cnt * 16 > nbuf_remaining(&b))
                return -EBADMSG;
        struct mcache_obj *v = calloc(cnt ? cnt : 1, sizeof *v);
        if (!v)
                return -ENOMEM;
        for (uint32_t i = 0; i < cnt; i++) {
                uint64_t h;
                const uint8_t *a;
                size_t alen;
                int r = -EBADMSG;
                if (!nbuf_get_u64(&b, &h) || !nbuf_get_blob(&b, &a, &alen) || !a ||
                    (r = nattrs_parse(&v[i].attrs, a, alen)) < 0) {
                        mcache_free_objects(v, cnt);
                        return r;
                }
                v[i].handle = (CK_OBJECT_HANDLE)h;
        }
        if (nbuf_remaining(&b) != 0) {
                mcache_free_objects(v, cnt);
                return -EBADMSG;
        }
        *ret = v;
        *ret_n = cnt;
        return 0;
}

/* Objects are valid while epoch and ogen hold (login changes are local
 * calls, which bump both generations). */
static bool objs_valid(struct mcache *c, const struct mslot *s) {
        return s->objs_state != OBJS_NONE && s->objs_st.epoch == c->epoch && s->objs_st.ogen == s->ogen;
}

void mcache_put_objects(struct mcache *c, CK_SLOT_ID slot, const struct mcache_stamp *st, CK_RV rv,
                        const uint8_t *p, size_t n) {
        struct mcache_obj *v = NULL;
        size_t nv = 0;
        bool ok = rv == CKR_OK && mcache_parse_objects(p, n, &v, &nv) == 0;
        pthread_mutex_lock(&c->lock);
        struct mslot *s = slot_get(c, slot);
        if (s && st->epoch == c->epoch && st->ogen == s->ogen && st->tgen == s->tgen) {
                slot_drop_objects(s);
                s->objs_state = ok ? OBJS_OK : OBJS_UNAVAILABLE;
                s->objs_st = *st;
                s->objs = v;
                s->nobjs = nv;
                v = NULL;
                nv = 0;
        }
        pthread_mutex_unlock(&c->lock);
        mcache_free_objects(v, nv);
}

/* Lock held.  The slot's valid copy, or the answer to give instead. */
static enum mcache_answer objs_locked(struct mcache *c, CK_SLOT_ID slot, struct mslot **ret) {
        struct mslot *s = slot_find(c, slot);
        if (!s || !objs_valid(c, s))
                return MCACHE_MISS;
        if (s->objs_state != OBJS_OK)
                return MCACHE_DAEMON;
        *ret = s;
        return MCACHE_HIT;
}

enum mcache_answer mcache_find(struct mcache *c, CK_SLOT_ID slot, const CK_ATTRIBUTE *t, CK_ULONG n,
                               CK_OBJECT_HANDLE **ret, size_t *ret_n) {
        struct mslot *s;
        pthread_mutex_lock(&c->lock);
        enum mcache_answer a = objs_locked(c, slot, &s);
        if (a != MCACHE_HIT) {
                pthread_mutex_unlock(&c->lock);
                return a;
        }
        CK_OBJECT_HANDLE *found = malloc((s->nobjs ? s->nobjs : 1) * sizeof *found);
        size_t nf = 0;
        if (!found) {
                pthread_mutex_unlock(&c->lock);
                return MCACHE_DAEMON;
        }
        for (size_t i = 0; i < s->nobjs && a == MCACHE_HIT; i++) {
                const struct nattrs *o = &s->objs[i].attrs;
                /* The copy lacks the sensitive attributes: a template that
                 * names one is matched by the daemon, which has them. */
                for (CK_ULONG j = 0; j < n; j++)
                        if (nattrs_is_sensitive(o, t[j].type)) {
                                a = MCACHE_DAEMON;
                                break;
                        }
                if (a == MCACHE_HIT && nattrs_match(o, t, n))
                        found[nf++] = s->objs[i].handle;
        }
        pthread_mutex_unlock(&c->lock);
        if (a != MCACHE_HIT) {
                free(found);
                return a;
        }
        *ret = found;
        *ret_n = nf;
        return MCACHE_HIT;
}

enum mcache_answer mcache_get_attributes(struct mcache *c, CK_SLOT_ID slot, CK_OBJECT_HANDLE obj,
                                         CK_ATTRIBUTE *t, CK_ULONG n, CK_RV *rv) {
        struct mslot *s;
        pthread_mutex_lock(&c->lock);
        enum mcache_answer a = objs_locked(c, slot, &s);
        if (a == MCACHE_HIT) {
                a = MCACHE_DAEMON; /* not among them: let the daemon say why */
                for (size_t i = 0; i < s->nobjs; i++)
                        if (s->objs[i].handle == obj) {
                                *rv = nattrs_answer(&s->objs[i].attrs, t, n);
                                a = MCACHE_HIT;
                                break;
                        }
        }
        pthread_mutex_unlock(&c->lock);
        return a;
}

void mcache_put_sign_mech(struct mcache *c, CK_SLOT_ID slot, const struct mcache_stamp *st, CK_MECHANISM_TYPE mech) {
        pthread_mutex_lock(&c->lock);
        struct mslot *s = st->epoch == c->epoch ? slot_get(c, slot) : NULL;
        if (s) {
                if (s->sign_epoch != c->epoch) {
                        s->sign_epoch = c->epoch;
                        s->nsign = 0;
                }
                bool known = false;
                for (size_t i = 0; i < s->nsign; i++)
                        known = known || s->sign_mechs[i] == mech;
                if (!known && s->nsign < MCACHE_SIGN_MECHS)
                        s->sign_mechs[s->nsign++] = mech;
        }
        pthread_mutex_unlock(&c->lock);
}

bool mcache_sign_mech_known(struct mcache *c, CK_SLOT_ID slot, CK_MECHANISM_TYPE mech) {
        bool known = false;
        pthread_mutex_lock(&c->lock);
        struct mslot *s = slot_find(c, slot);
        if (s && s->sign_epoch == c->epoch)
                for (size_t i = 0; i < s->nsign; i++)
                        known = known || s->sign_mechs[i] == mech;
        pthread_mutex_unlock(&c->lock);
        return known;
}
