/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* PKCS#11 semantics over the drivers, objects: the per-token object cache,
 * visibility, find, attributes, create and destroy, key generation.  See
 * core.h, and core-internal.h for the locks and the state the files share. */
#include "core-internal.h"

#include <assert.h>
#include <errno.h>
#include <mbedtls/md.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/pkcrypto.h"
#include "common/secmem.h"
#include "audit.h"
#include "common/ckr.h"
#include "pincache.h"
#include "peer.h"
#include "pinentry.h"
#include "common/util.h"


/* --------------------------------------------------------------- objects */

/* Makes sure the token's objects are in the cache (reading them once). */
static int obj_insert_locked(struct tok *k, struct dobj *d, struct core_client *owner, CK_SESSION_HANDLE sess,
                             CK_OBJECT_HANDLE *ret);
static void obj_remove_locked(struct tok *k, struct cobj *o);

/* After a write to a token whose writes may touch other objects
 * (driver_ops.writes_affect_others): its list read again and matched by id
 * with the token objects the core has: gone ones removed, changed ones
 * updated, new ones added; their handles stay.  Session objects are the
 * core's own and untouched.  Token lock held. */
static int tok_reconcile_locked(struct tok *k) {
        struct dobj *v = NULL;
        size_t n = 0;
        int r = k->ops->load_objects(k->t, &v, &n);
        if (r < 0)
                return r;
        struct core *c = k->core;
        core_lock(c);
        k->object_loads++;
        for (size_t i = 0; i < k->nobjs;) {
                struct cobj *o = k->objs[i];
                size_t j = 0;
                while (j < n && (o->owner || v[j].id != o->id))
                        j++;
                if (o->owner) {
                        i++;
                        continue;
                }
                if (j == n) {
                        obj_remove_locked(k, o);
                        continue;
                }
                nattrs_done(&o->attrs);
                o->attrs = v[j].attrs;
                nattrs_init(&v[j].attrs);
                v[j].id = 0; /* matched */
                i++;
        }
        for (size_t j = 0; j < n && r == 0; j++)
                if (v[j].id)
                        r = obj_insert_locked(k, &v[j], NULL, 0, NULL);
        core_unlock(c);
        dobj_free_array(v, n);
        return r;
}

/* Core lock held.  The handle of token object id, 0 if none. */
static CK_OBJECT_HANDLE handle_of_id_locked(struct tok *k, uint64_t id) {
        for (size_t i = 0; i < k->nobjs; i++)
                if (!k->objs[i]->owner && k->objs[i]->id == id)
                        return k->objs[i]->handle;
        return CK_INVALID_HANDLE;
}

static __thread bool tl_nowait, tl_would_block;

void core_set_nowait(bool on) {
        tl_nowait = on;
        tl_would_block = false;
}

bool core_take_would_block(void) {
        bool r = tl_would_block;
        tl_would_block = false;
        return r;
}

CK_RV tok_load(struct tok *k) {
        struct core *c = k->core;
        core_lock(c);
        bool loaded = k->loaded;
        core_unlock(c);
        if (loaded)
                return CKR_OK;
        if (tl_nowait) {
                /* Every caller calls this before it changes anything. */
                tl_would_block = true;
                return CKR_FUNCTION_FAILED;
        }
        _cleanup_tok_unlock_ struct tok *held = tok_lock(k);
        core_lock(c);
        loaded = k->loaded;
        core_unlock(c);
        if (loaded)
                return CKR_OK;
        struct dobj *v = NULL;
        size_t n = 0;
        int r = k->ops->load_objects(k->t, &v, &n);
        if (r < 0)
                return rv_from_errno(r);
        core_lock(c);
        k->object_loads++;
        core_unlock(c);
        struct cobj **objs = calloc(n ? n : 1, sizeof *objs);
        if (!objs) {
                dobj_free_array(v, n);
                return CKR_HOST_MEMORY;
        }
        for (size_t i = 0; i < n; i++) {
                objs[i] = calloc(1, sizeof **objs);
                if (!objs[i]) {
                        for (size_t j = 0; j < i; j++)
                                cobj_free(objs[j]);
                        free(objs);
                        dobj_free_array(v, n);
                                return CKR_HOST_MEMORY;
                }
                objs[i]->id = v[i].id;
                objs[i]->attrs = v[i].attrs;
                nattrs_init(&v[i].attrs);
        }
        dobj_free_array(v, n);
        core_lock(c);
        for (size_t i = 0; i < n; i++)
                objs[i]->handle = c->next_object++;
        /* Session objects created before the load stay. */
        for (size_t i = 0; i < k->nobjs; i++)
                if (k->objs[i]->owner) {
                        struct cobj **no = realloc(objs, (n + 1) * sizeof *no);
                        if (!no)
                                break;
                        objs = no;
                        objs[n++] = k->objs[i];
                        k->objs[i] = NULL;
                }
        for (size_t i = 0; i < k->nobjs; i++)
                cobj_free(k->objs[i]);
        free(k->objs);
        k->objs = objs;
        k->nobjs = n;
        k->loaded = true;
        core_unlock(c);
        tok_unlock(TAKE_PTR(held));
        log_debug(LOG_SUB_CORE, "slot %lu: %zu objects loaded", (unsigned long)k->slot, n);
        return CKR_OK;
}

static bool obj_visible(const struct cobj *o, struct core_client *cl, bool user) {
        if (o->owner && o->owner != cl)
                return false;
        if (nattrs_get_bool(&o->attrs, CKA_PRIVATE, false) && !user)
                return false;
        return true;
}

/* Core lock held.  The visible object with this handle, or NULL. */
struct cobj *obj_find_locked(struct tok *k, CK_OBJECT_HANDLE h, struct core_client *cl, bool user) {
        for (size_t i = 0; i < k->nobjs; i++)
                if (k->objs[i]->handle == h)
                        return obj_visible(k->objs[i], cl, user) ? k->objs[i] : NULL;
        return NULL;
}

static int obj_insert_locked(struct tok *k, struct dobj *d, struct core_client *owner, CK_SESSION_HANDLE sess,
                             CK_OBJECT_HANDLE *ret) {
        struct cobj *o = calloc(1, sizeof *o);
        if (!o)
                return -ENOMEM;
        struct cobj **no = realloc(k->objs, (k->nobjs + 1) * sizeof *no);
        if (!no) {
                free(o);
                return -ENOMEM;
        }
        k->objs = no;
        o->id = d->id;
        o->attrs = d->attrs;
        nattrs_init(&d->attrs);
        o->owner = owner;
        o->owner_session = sess;
        o->handle = k->core->next_object++;
        k->objs[k->nobjs++] = o;
        if (ret)
                *ret = o->handle;
        return 0;
}

static void obj_remove_locked(struct tok *k, struct cobj *o) {
        for (size_t i = 0; i < k->nobjs; i++)
                if (k->objs[i] == o) {
                        memmove(&k->objs[i], &k->objs[i + 1], (k->nobjs - i - 1) * sizeof *k->objs);
                        k->nobjs--;
                        cobj_free(o);
                        return;
                }
}

void destroy_session_objects(struct core *c, struct tok *k, struct core_client *cl,
                                    CK_SESSION_HANDLE only) {
        for (;;) {
                uint64_t id = 0;
                core_lock(c);
                for (size_t i = 0; i < k->nobjs; i++)
                        if (k->objs[i]->owner == cl && (!only || k->objs[i]->owner_session == only)) {
                                id = k->objs[i]->id;
                                obj_remove_locked(k, k->objs[i]);
                                break;
                        }
                bool removed = k->removed;
                core_unlock(c);
                if (!id)
                        break;
                if (!removed) {
                        tok_lock(k);
                        (void)k->ops->destroy_object(k->t, id);
                        tok_unlock(k);
                }
        }
}

/* The session, with its token's objects loaded, and whether its client is
 * logged in as user (who sees private objects).  Released with
 * session_put() on CKR_OK only. */
static CK_RV session_get_objects(struct core_client *cl, CK_SESSION_HANDLE h, struct session **ret, bool *ret_user) {
        struct session *s;
        CK_RV rv = session_get(cl, h, &s);
        if (rv != CKR_OK)
                return rv;
        if ((rv = tok_load(s->tok)) != CKR_OK) {
                session_put(s);
                return rv;
        }
        *ret_user = is_user(cl, s->tok);
        *ret = s;
        return CKR_OK;
}

CK_RV core_get_attribute_value(struct core_client *cl, CK_SESSION_HANDLE h, CK_OBJECT_HANDLE obj,
                               CK_ATTRIBUTE_PTR tmpl, CK_ULONG n) {
        if (!tmpl && n)
                return CKR_ARGUMENTS_BAD;
        struct session *s;
        bool user;
        CK_RV rv = session_get_objects(cl, h, &s, &user);
        if (rv != CKR_OK)
                return rv;
        struct tok *k = s->tok;
        core_lock(cl->core);
        struct cobj *o = obj_find_locked(k, obj, cl, user);
        rv = o ? nattrs_answer(&o->attrs, tmpl, n) : CKR_OBJECT_HANDLE_INVALID;
        core_unlock(cl->core);
        session_put(s);
        return rv;
}

CK_RV core_find_objects_init(struct core_client *cl, CK_SESSION_HANDLE h, CK_ATTRIBUTE_PTR tmpl, CK_ULONG n) {
        if (!tmpl && n)
                return CKR_ARGUMENTS_BAD;
        _cleanup_session_ struct session *s = NULL;
        bool user;
        CK_RV rv = session_get_objects(cl, h, &s, &user);
        if (rv != CKR_OK)
                return rv;
        if (s->finding)
                return CKR_OPERATION_ACTIVE;
        struct tok *k = s->tok;
        core_lock(cl->core);
        CK_OBJECT_HANDLE *found = calloc(k->nobjs ? k->nobjs : 1, sizeof *found);
        size_t nf = 0;
        if (found)
                for (size_t i = 0; i < k->nobjs; i++)
                        if (obj_visible(k->objs[i], cl, user) && nattrs_match(&k->objs[i]->attrs, tmpl, n))
                                found[nf++] = k->objs[i]->handle;
        core_unlock(cl->core);
        if (!found)
                return CKR_HOST_MEMORY;
        free(s->found);
        s->found = found;
        s->nfound = nf;
        s->found_pos = 0;
        s->finding = true;
        return CKR_OK;
}

CK_RV core_find_objects(struct core_client *cl, CK_SESSION_HANDLE h, CK_OBJECT_HANDLE_PTR ret, CK_ULONG max,
                        CK_ULONG_PTR ret_count) {
        if (!ret_count || (!ret && max))
                return CKR_ARGUMENTS_BAD;
        struct session *s;
        CK_RV rv = session_get(cl, h, &s);
        if (rv != CKR_OK)
                return rv;
        if (!s->finding) {
                session_put(s);
                return CKR_OPERATION_NOT_INITIALIZED;
        }
        CK_ULONG n = 0;
        while (n < max && s->found_pos < s->nfound)
                ret[n++] = s->found[s->found_pos++];
        *ret_count = n;
        session_put(s);
        return CKR_OK;
}

CK_RV core_find_objects_final(struct core_client *cl, CK_SESSION_HANDLE h) {
        struct session *s;
        CK_RV rv = session_get(cl, h, &s);
        if (rv != CKR_OK)
                return rv;
        if (!s->finding)
                rv = CKR_OPERATION_NOT_INITIALIZED;
        free(s->found);
        s->found = NULL;
        s->nfound = s->found_pos = 0;
        s->finding = false;
        session_put(s);
        return rv;
}

CK_RV core_get_objects(struct core_client *cl, CK_SESSION_HANDLE h, size_t max_bytes, struct nbuf *out) {
        struct session *s;
        bool user;
        CK_RV rv = session_get_objects(cl, h, &s, &user);
        if (rv != CKR_OK)
                return rv;
        struct tok *k = s->tok;
        struct nattrs pub;
        nattrs_init(&pub);
        core_lock(cl->core);
        uint32_t n = 0;
        for (size_t i = 0; i < k->nobjs; i++)
                if (obj_visible(k->objs[i], cl, user))
                        n++;
        nbuf_put_u32(out, n);
        for (size_t i = 0; i < k->nobjs && !nbuf_failed(out); i++) {
                const struct cobj *o = k->objs[i];
                if (!obj_visible(o, cl, user))
                        continue;
                /* The object as C_GetAttributeValue shows it: without the
                 * sensitive attributes. */
                nattrs_done(&pub);
                for (size_t j = 0; j < o->attrs.n; j++)
                        if (!nattrs_is_sensitive(&o->attrs, o->attrs.v[j].type) &&
                            nattrs_set(&pub, o->attrs.v[j].type, o->attrs.v[j].value, o->attrs.v[j].len) < 0)
                                nbuf_fail(out);
                struct nbuf one;
                nbuf_init(&one, WIRE_FRAME_MAX);
                nattrs_serialize(&pub, &one);
                nbuf_put_u64(out, o->handle);
                nbuf_put_blob(out, one.data, one.len);
                if (nbuf_failed(&one))
                        nbuf_fail(out);
                nbuf_done(&one);
                if (out->len > max_bytes) {
                        rv = CKR_DATA_LEN_RANGE;
                        break;
                }
        }
        core_unlock(cl->core);
        nattrs_done(&pub);
        session_put(s);
        if (rv == CKR_OK && nbuf_failed(out))
                rv = CKR_HOST_MEMORY;
        return rv;
}

static bool tmpl_bool(const CK_ATTRIBUTE *t, CK_ULONG n, CK_ATTRIBUTE_TYPE type, bool def) {
        for (CK_ULONG i = 0; i < n; i++)
                if (t[i].type == type && t[i].pValue && t[i].ulValueLen == sizeof(CK_BBOOL))
                        return *(CK_BBOOL *)t[i].pValue != 0;
        return def;
}

static bool tmpl_ulong(const CK_ATTRIBUTE *t, CK_ULONG n, CK_ATTRIBUTE_TYPE type, CK_ULONG *ret) {
        for (CK_ULONG i = 0; i < n; i++)
                if (t[i].type == type && t[i].pValue && t[i].ulValueLen == sizeof(CK_ULONG)) {
                        memcpy(ret, t[i].pValue, sizeof *ret);
                        return true;
                }
        return false;
}

static CK_RV check_template(const CK_ATTRIBUTE *t, CK_ULONG n) {
        if (!t && n)
                return CKR_ARGUMENTS_BAD;
        for (CK_ULONG i = 0; i < n; i++)
                if (!t[i].pValue && t[i].ulValueLen)
                        return CKR_ATTRIBUTE_VALUE_INVALID;
        return CKR_OK;
}

/* Under the token lock, after the driver made object d for session h: the
 * core's copy of it and its handle in *ret (a token object of a driver
 * whose writes others see comes back through a reconcile).  Frees d. */
static int obj_made_locked(struct core_client *cl, struct tok *k, CK_SESSION_HANDLE h, bool persistent,
                           struct dobj *d, CK_OBJECT_HANDLE *ret) {
        int r;
        if (persistent && k->ops->writes_affect_others) {
                r = tok_reconcile_locked(k);
                core_lock(cl->core);
                *ret = handle_of_id_locked(k, d->id);
                core_unlock(cl->core);
                if (r == 0 && !*ret)
                        r = -EIO;
        } else {
                core_lock(cl->core);
                r = obj_insert_locked(k, d, persistent ? NULL : cl, persistent ? 0 : h, ret);
                core_unlock(cl->core);
        }
        dobj_done(d);
        return r;
}

/* CKA_TRUSTED may be made true by the SO only (PKCS#11 2.40 section 4.9):
 * a trusted key may wrap sensitive keys. */
static CK_RV trusted_ok(struct core_client *cl, struct tok *k, const CK_ATTRIBUTE *tmpl, CK_ULONG n) {
        return tmpl_bool(tmpl, n, CKA_TRUSTED, false) && login_state(cl, k) != CKU_SO ? CKR_ATTRIBUTE_READ_ONLY
                                                                                      : CKR_OK;
}

/* The start of a call that makes or changes an object from a template:
 * its arguments (ret_ok: its output pointers are there), CKA_TRUSTED,
 * then its session (*ret_s, session_put it). */
static CK_RV make_begin(struct core_client *cl, CK_SESSION_HANDLE h, bool ret_ok, const CK_ATTRIBUTE *tmpl,
                        CK_ULONG n, struct session **ret_s) {
        if (!ret_ok)
                return CKR_ARGUMENTS_BAD;
        CK_RV rv = check_template(tmpl, n);
        if (rv == CKR_OK)
                rv = session_get(cl, h, ret_s);
        if (rv == CKR_OK && (rv = trusted_ok(cl, (*ret_s)->tok, tmpl, n)) != CKR_OK)
                session_put(*ret_s);
        return rv;
}

/* The end of it, the token lock held and r the driver's result for new
 * object d: its handle in *ret; the lock released, then the event for a
 * token object. */
static CK_RV make_end(struct core_client *cl, struct session *s, bool persistent, int r, struct dobj *d,
                      CK_OBJECT_HANDLE *ret) {
        if (r == 0)
                r = obj_made_locked(cl, s->tok, s->h, persistent, d, ret);
        tok_unlock(s->tok);
        CK_RV rv = rv_from_errno(r);
        if (rv == CKR_OK && persistent)
                emit(cl->core, WIRE_EV_OBJECTS_CHANGED, s->slot);
        return rv;
}

CK_RV core_create_object(struct core_client *cl, CK_SESSION_HANDLE h, CK_ATTRIBUTE_PTR tmpl, CK_ULONG n,
                         CK_OBJECT_HANDLE_PTR ret) {
        CK_ULONG cls = 0;
        if (ret && check_template(tmpl, n) == CKR_OK && !tmpl_ulong(tmpl, n, CKA_CLASS, &cls))
                return CKR_TEMPLATE_INCOMPLETE;
        struct session *s;
        CK_RV rv = make_begin(cl, h, ret, tmpl, n, &s);
        if (rv != CKR_OK)
                return rv;
        struct tok *k = s->tok;
        bool persistent = tmpl_bool(tmpl, n, CKA_TOKEN, false);
        bool priv = tmpl_bool(tmpl, n, CKA_PRIVATE, cls == CKO_PRIVATE_KEY || cls == CKO_SECRET_KEY);
        if ((rv = tok_load(k)) != CKR_OK)
                goto out;
        if (persistent && !(s->flags & CKF_RW_SESSION)) {
                rv = CKR_SESSION_READ_ONLY;
                goto out;
        }
        if (priv && !is_user(cl, k)) {
                rv = CKR_USER_NOT_LOGGED_IN;
                goto out;
        }
        struct dobj d;
        memset(&d, 0, sizeof d);
        tok_lock(k);
        rv = make_end(cl, s, persistent, k->ops->create_object(k->t, tmpl, n, persistent, &d), &d, ret);
        if (persistent)
                audit_object(cl, k, tmpl, n, false, rv);
out:
        session_put(s);
        return rv;
}

/* Under the token and core locks: the object a destroy or a change by
 * session s names (NULL: none visible), and in *ret_rv whether it may act
 * on it: CKR_OBJECT_HANDLE_INVALID, CKR_SESSION_READ_ONLY for a token
 * object in a R/O session, CKR_ACTION_PROHIBITED when allowed_by
 * (CKA_DESTROYABLE, CKA_MODIFIABLE) is false.  user: the client is logged in. */
static struct cobj *obj_target_locked(struct session *s, CK_OBJECT_HANDLE obj, bool user,
                                      CK_ATTRIBUTE_TYPE allowed_by, CK_RV *ret_rv) {
        struct cobj *o = obj_find_locked(s->tok, obj, s->cl, user);
        if (!o)
                *ret_rv = CKR_OBJECT_HANDLE_INVALID;
        else if (!o->owner && !(s->flags & CKF_RW_SESSION))
                *ret_rv = CKR_SESSION_READ_ONLY;
        else if (!nattrs_get_bool(&o->attrs, allowed_by, true))
                *ret_rv = CKR_ACTION_PROHIBITED;
        else
                *ret_rv = CKR_OK;
        return o;
}

/* make_begin, then the token's objects loaded and its lock taken
 * (tok_unlock it); *ret_user: the client is logged in.  On an error
 * nothing is held.  Opens copy, destroy and set-attribute calls. */
static CK_RV obj_call_begin(struct core_client *cl, CK_SESSION_HANDLE h, bool args_ok, const CK_ATTRIBUTE *tmpl,
                            CK_ULONG n, struct session **ret_s, bool *ret_user) {
        CK_RV rv = make_begin(cl, h, args_ok, tmpl, n, ret_s);
        if (rv != CKR_OK)
                return rv;
        if ((rv = tok_load((*ret_s)->tok)) != CKR_OK) {
                session_put(*ret_s);
                return rv;
        }
        *ret_user = is_user(cl, (*ret_s)->tok);
        tok_lock((*ret_s)->tok);
        return CKR_OK;
}

CK_RV core_copy_object(struct core_client *cl, CK_SESSION_HANDLE h, CK_OBJECT_HANDLE obj, CK_ATTRIBUTE_PTR tmpl,
                       CK_ULONG n, CK_OBJECT_HANDLE_PTR ret) {
        struct session *s;
        bool user;
        CK_RV rv = obj_call_begin(cl, h, ret, tmpl, n, &s, &user);
        if (rv != CKR_OK)
                return rv;
        struct tok *k = s->tok;
        core_lock(cl->core);
        struct cobj *o = obj_find_locked(k, obj, cl, user);
        uint64_t id = o ? o->id : 0;
        bool copyable = o && nattrs_get_bool(&o->attrs, CKA_COPYABLE, true);
        bool persistent = tmpl_bool(tmpl, n, CKA_TOKEN, o && !o->owner);
        bool priv = tmpl_bool(tmpl, n, CKA_PRIVATE, o && nattrs_get_bool(&o->attrs, CKA_PRIVATE, false));
        char label[65] = "";
        if (o)
                obj_label_locked(k, obj, label, sizeof label);
        core_unlock(cl->core);
        if (!o)
                rv = CKR_OBJECT_HANDLE_INVALID;
        else if (!copyable)
                rv = CKR_ACTION_PROHIBITED;
        else if (persistent && !(s->flags & CKF_RW_SESSION))
                rv = CKR_SESSION_READ_ONLY;
        else if (priv && !user)
                rv = CKR_USER_NOT_LOGGED_IN;
        else if (!k->ops->copy_object)
                rv = CKR_FUNCTION_NOT_SUPPORTED;
        if (rv != CKR_OK)
                tok_unlock(k);
        else {
                struct dobj d;
                memset(&d, 0, sizeof d);
                rv = make_end(cl, s, persistent, k->ops->copy_object(k->t, id, tmpl, n, persistent, &d), &d, ret);
        }
        if (persistent)
                audit(cl, k, "object-copy", label, rv, NULL);
        session_put(s);
        return rv;
}

CK_RV core_destroy_object(struct core_client *cl, CK_SESSION_HANDLE h, CK_OBJECT_HANDLE obj) {
        struct session *s;
        bool user;
        CK_RV rv = obj_call_begin(cl, h, true, NULL, 0, &s, &user);
        if (rv != CKR_OK)
                return rv;
        struct tok *k = s->tok;
        core_lock(cl->core);
        struct cobj *o = obj_target_locked(s, obj, user, CKA_DESTROYABLE, &rv);
        uint64_t id = o ? o->id : 0;
        bool persistent = o && !o->owner;
        CK_ULONG cls = CKO_DATA;
        char label[65] = "";
        if (o) {
                (void)nattrs_get_ulong(&o->attrs, CKA_CLASS, &cls);
                obj_label_locked(k, obj, label, sizeof label);
        }
        core_unlock(cl->core);
        if (rv == CKR_OK) {
                rv = rv_from_errno(k->ops->destroy_object(k->t, id));
                if (rv == CKR_OK && persistent && k->ops->writes_affect_others)
                        rv = rv_from_errno(tok_reconcile_locked(k));
                else if (rv == CKR_OK) {
                        core_lock(cl->core);
                        for (size_t i = 0; i < k->nobjs; i++)
                                if (k->objs[i]->handle == obj) {
                                        obj_remove_locked(k, k->objs[i]);
                                        break;
                                }
                        core_unlock(cl->core);
                }
        }
        tok_unlock(k);
        if (rv == CKR_OK && persistent)
                emit(cl->core, WIRE_EV_OBJECTS_CHANGED, s->slot);
        if (persistent)
                audit(cl, k, cls == CKO_CERTIFICATE ? "cert-delete" : "object-delete", label, rv, NULL);
        session_put(s);
        return rv;
}

CK_RV core_set_attribute_value(struct core_client *cl, CK_SESSION_HANDLE h, CK_OBJECT_HANDLE obj,
                               CK_ATTRIBUTE_PTR tmpl, CK_ULONG n) {
        struct session *s;
        bool user;
        CK_RV rv = obj_call_begin(cl, h, true, tmpl, n, &s, &user);
        if (rv != CKR_OK)
                return rv;
        struct tok *k = s->tok;
        core_lock(cl->core);
        struct cobj *o = obj_target_locked(s, obj, user, CKA_MODIFIABLE, &rv);
        uint64_t id = o ? o->id : 0;
        bool persistent = o && !o->owner;
        core_unlock(cl->core);
        if (rv == CKR_OK && !k->ops->set_attributes)
                rv = CKR_FUNCTION_NOT_SUPPORTED;
        else if (rv == CKR_OK) {
                struct nattrs na;
                nattrs_init(&na);
                int r = k->ops->set_attributes(k->t, id, tmpl, n, &na);
                if (r == -EINVAL)
                        r = -EDOM; /* a bad value, not an inconsistent template */
                rv = rv_from_errno(r);
                if (rv == CKR_OK) {
                        core_lock(cl->core);
                        for (size_t i = 0; i < k->nobjs; i++)
                                if (k->objs[i]->handle == obj) {
                                        nattrs_done(&k->objs[i]->attrs);
                                        k->objs[i]->attrs = na;
                                        nattrs_init(&na);
                                        break;
                                }
                        core_unlock(cl->core);
                }
                nattrs_done(&na);
        }
        tok_unlock(k);
        if (rv == CKR_OK && persistent)
                emit(cl->core, WIRE_EV_OBJECTS_CHANGED, s->slot);
        session_put(s);
        return rv;
}

CK_RV core_generate_key_pair(struct core_client *cl, CK_SESSION_HANDLE h, CK_MECHANISM_PTR mech,
                             CK_ATTRIBUTE_PTR pub_tmpl, CK_ULONG pub_n, CK_ATTRIBUTE_PTR priv_tmpl,
                             CK_ULONG priv_n, CK_OBJECT_HANDLE_PTR ret_pub, CK_OBJECT_HANDLE_PTR ret_priv) {
        if (!mech || !ret_pub || !ret_priv)
                return CKR_ARGUMENTS_BAD;
        CK_RV rv = check_template(pub_tmpl, pub_n);
        if (rv == CKR_OK)
                rv = check_template(priv_tmpl, priv_n);
        if (rv != CKR_OK)
                return rv;
        struct session *s;
        if ((rv = session_get(cl, h, &s)) != CKR_OK)
                return rv;
        struct tok *k = s->tok;
        const CK_MECHANISM_INFO *mi = mech_lookup(k, mech->mechanism);
        bool persistent = tmpl_bool(pub_tmpl, pub_n, CKA_TOKEN, false) || tmpl_bool(priv_tmpl, priv_n, CKA_TOKEN, false);
        if (!mi || !(mi->flags & CKF_GENERATE_KEY_PAIR) || !k->ops->generate_key_pair)
                rv = CKR_MECHANISM_INVALID;
        else if (trusted_ok(cl, k, pub_tmpl, pub_n) != CKR_OK)
                rv = CKR_ATTRIBUTE_READ_ONLY;
        else if (persistent && !(s->flags & CKF_RW_SESSION))
                rv = CKR_SESSION_READ_ONLY;
        else if (!is_user(cl, k) && (tmpl_bool(priv_tmpl, priv_n, CKA_PRIVATE, true) ||
                                     tmpl_bool(pub_tmpl, pub_n, CKA_PRIVATE, false)))
                rv = CKR_USER_NOT_LOGGED_IN; /* public session objects need no login (2.40 section 4.4) */
        else
                rv = tok_load(k);
        if (rv != CKR_OK)
                goto out;
        struct dobj pub, priv;
        memset(&pub, 0, sizeof pub);
        memset(&priv, 0, sizeof priv);
        tok_lock(k);
        int r = k->ops->generate_key_pair(k->t, mech, pub_tmpl, pub_n, priv_tmpl, priv_n, &pub, &priv);
        if (r == 0 && k->ops->writes_affect_others) {
                r = tok_reconcile_locked(k);
                core_lock(cl->core);
                *ret_pub = handle_of_id_locked(k, pub.id);
                *ret_priv = handle_of_id_locked(k, priv.id);
                core_unlock(cl->core);
                if (r == 0 && (!*ret_pub || !*ret_priv))
                        r = -EIO;
        } else if (r == 0) {
                bool pub_tok = tmpl_bool(pub_tmpl, pub_n, CKA_TOKEN, false);
                bool priv_tok = tmpl_bool(priv_tmpl, priv_n, CKA_TOKEN, false);
                core_lock(cl->core);
                r = obj_insert_locked(k, &pub, pub_tok ? NULL : cl, pub_tok ? 0 : h, ret_pub);
                if (r == 0)
                        r = obj_insert_locked(k, &priv, priv_tok ? NULL : cl, priv_tok ? 0 : h, ret_priv);
                core_unlock(cl->core);
        }
        dobj_done(&pub);
        dobj_done(&priv);
        tok_unlock(k);
        rv = rv_from_errno(r);
        if (rv == CKR_OK && persistent)
                emit(cl->core, WIRE_EV_OBJECTS_CHANGED, s->slot);
        audit_object(cl, k, priv_tmpl, priv_n, true, rv);
out:
        session_put(s);
        return rv;
}

CK_RV core_generate_key(struct core_client *cl, CK_SESSION_HANDLE h, CK_MECHANISM_PTR mech, CK_ATTRIBUTE_PTR tmpl,
                        CK_ULONG n, CK_OBJECT_HANDLE_PTR ret) {
        struct session *s;
        CK_RV rv = make_begin(cl, h, mech && ret, tmpl, n, &s);
        if (rv != CKR_OK)
                return rv;
        struct tok *k = s->tok;
        const CK_MECHANISM_INFO *mi = mech_lookup(k, mech->mechanism);
        bool persistent = tmpl_bool(tmpl, n, CKA_TOKEN, false);
        if (!mi || !(mi->flags & CKF_GENERATE) || !k->ops->generate_key)
                rv = CKR_MECHANISM_INVALID;
        else if (persistent && !(s->flags & CKF_RW_SESSION))
                rv = CKR_SESSION_READ_ONLY;
        else if (!is_user(cl, k) && tmpl_bool(tmpl, n, CKA_PRIVATE, true))
                rv = CKR_USER_NOT_LOGGED_IN;
        else
                rv = tok_load(k);
        if (rv != CKR_OK)
                goto out;
        struct dobj d;
        memset(&d, 0, sizeof d);
        tok_lock(k);
        rv = make_end(cl, s, persistent, k->ops->generate_key(k->t, mech, tmpl, n, persistent, &d), &d, ret);
        audit_object(cl, k, tmpl, n, true, rv);
out:
        session_put(s);
        return rv;
}

/* ---- C_WrapKey, C_UnwrapKey ---- */

/* What the wrapping rules look at in a key. */
struct key_facts {
        uint64_t id;
        CK_ULONG cls, kt;
        bool priv, wrap, unwrap, decrypt, extractable, sensitive, always_sensitive, never_extractable, trusted,
                wrap_with_trusted;
};

/* Key h's facts: false when the client sees no such object. */
static bool key_facts_get(struct core_client *cl, struct tok *k, CK_OBJECT_HANDLE h, struct key_facts *ret) {
        bool user = is_user(cl, k);
        core_lock(cl->core);
        struct cobj *o = obj_find_locked(k, h, cl, user);
        if (o) {
                const struct nattrs *a = &o->attrs;
                *ret = (struct key_facts){
                        .id = o->id,
                        .priv = nattrs_get_bool(a, CKA_PRIVATE, false),
                        .wrap = nattrs_get_bool(a, CKA_WRAP, false),
                        .unwrap = nattrs_get_bool(a, CKA_UNWRAP, false),
                        .decrypt = nattrs_get_bool(a, CKA_DECRYPT, false),
                        .extractable = nattrs_get_bool(a, CKA_EXTRACTABLE, false),
                        .sensitive = nattrs_get_bool(a, CKA_SENSITIVE, true),
                        .always_sensitive = nattrs_get_bool(a, CKA_ALWAYS_SENSITIVE, false),
                        .never_extractable = nattrs_get_bool(a, CKA_NEVER_EXTRACTABLE, false),
                        .trusted = nattrs_get_bool(a, CKA_TRUSTED, false),
                        .wrap_with_trusted = nattrs_get_bool(a, CKA_WRAP_WITH_TRUSTED, false),
                };
                nattrs_get_ulong(a, CKA_CLASS, &ret->cls);
                nattrs_get_ulong(a, CKA_KEY_TYPE, &ret->kt);
        }
        core_unlock(cl->core);
        return o != NULL;
}

/* A key that may wrap sensitive keys: trusted (by the SO), or a secret
 * key no caller can know or decrypt with: its value never left the token
 * (sensitive and unextractable since it was generated here) and it has
 * no CKA_DECRYPT. */
static bool guards_sensitive(const struct key_facts *w) {
        return w->trusted ||
               (w->cls == CKO_SECRET_KEY && !w->decrypt && w->always_sensitive && w->never_extractable);
}

/* The mechanism's key: an AES secret key for the AES key wraps, an RSA
 * public key (wrapping) or private key (unwrapping) for RSA. */
static bool wrap_key_type_ok(CK_MECHANISM_TYPE m, const struct key_facts *w, bool wrapping) {
        if (m == CKM_AES_KEY_WRAP || m == CKM_AES_KEY_WRAP_PAD)
                return w->cls == CKO_SECRET_KEY && w->kt == CKK_AES;
        return w->kt == CKK_RSA && w->cls == (wrapping ? CKO_PUBLIC_KEY : CKO_PRIVATE_KEY);
}

/* The mechanism and the token's op for it; then the common key checks. */
static CK_RV wrap_mech_ok(struct tok *k, const CK_MECHANISM *mech, bool wrapping) {
        const CK_MECHANISM_INFO *mi = mech_lookup(k, mech->mechanism);
        if (!mi || !(mi->flags & (wrapping ? CKF_WRAP : CKF_UNWRAP)) ||
            (wrapping ? !k->ops->wrap_key : !k->ops->unwrap_key))
                return CKR_MECHANISM_INVALID;
        return sym_param_ok(mech) ? CKR_OK : CKR_MECHANISM_PARAM_INVALID;
}

/* PKCS#11's rules for C_WrapKey, and the token's own for sensitive keys. */
static CK_RV wrap_policy(const CK_MECHANISM *mech, const struct key_facts *w, const struct key_facts *x, bool user) {
        if ((w->priv || x->priv) && !user)
                return CKR_USER_NOT_LOGGED_IN;
        if (!wrap_key_type_ok(mech->mechanism, w, true))
                return CKR_WRAPPING_KEY_TYPE_INCONSISTENT;
        if (!w->wrap)
                return CKR_KEY_FUNCTION_NOT_PERMITTED;
        if (x->cls != CKO_SECRET_KEY && x->cls != CKO_PRIVATE_KEY)
                return CKR_KEY_NOT_WRAPPABLE;
        if (!x->extractable)
                return CKR_KEY_UNEXTRACTABLE;
        if (x->cls != CKO_SECRET_KEY || (x->wrap_with_trusted && !w->trusted) ||
            (x->sensitive && !guards_sensitive(w)))
                return CKR_KEY_NOT_WRAPPABLE;
        return CKR_OK;
}

CK_RV core_wrap_key(struct core_client *cl, CK_SESSION_HANDLE h, CK_MECHANISM_PTR mech, CK_OBJECT_HANDLE wkey,
                    CK_OBJECT_HANDLE key, CK_BYTE_PTR out, CK_ULONG_PTR out_len) {
        if (!mech || !out_len || (mech->ulParameterLen && !mech->pParameter))
                return CKR_ARGUMENTS_BAD;
        _cleanup_session_ struct session *s = NULL;
        CK_RV rv = session_get(cl, h, &s);
        if (rv != CKR_OK)
                return rv;
        struct tok *k = s->tok;
        struct key_facts w, x;
        if ((rv = wrap_mech_ok(k, mech, true)) != CKR_OK || (rv = tok_load(k)) != CKR_OK)
                return rv;
        if (!key_facts_get(cl, k, wkey, &w))
                return CKR_WRAPPING_KEY_HANDLE_INVALID;
        if (!key_facts_get(cl, k, key, &x))
                return CKR_KEY_HANDLE_INVALID;
        if ((rv = wrap_policy(mech, &w, &x, is_user(cl, k))) != CKR_OK)
                return rv;
        size_t ol = out ? *out_len : 0;
        tok_lock(k);
        int r = k->ops->wrap_key(k->t, w.id, mech, x.id, out, &ol);
        tok_unlock(k);
        if (r == 0 || r == -ENOBUFS)
                *out_len = ol;
        return r == -ENOBUFS ? CKR_BUFFER_TOO_SMALL : r == -ERANGE ? CKR_KEY_SIZE_RANGE : rv_from_errno(r);
}

/* PKCS#11's rules for C_UnwrapKey, and the token's: a key that may wrap
 * sensitive keys unwraps only into sensitive ones, so that a key it
 * wrapped cannot come back in the clear. */
static CK_RV unwrap_policy(const CK_MECHANISM *mech, const struct key_facts *u, const CK_ATTRIBUTE *tmpl,
                           CK_ULONG n, bool user) {
        CK_ULONG cls = CKO_SECRET_KEY;
        if ((u->priv || tmpl_bool(tmpl, n, CKA_PRIVATE, true)) && !user)
                return CKR_USER_NOT_LOGGED_IN;
        if (!wrap_key_type_ok(mech->mechanism, u, false))
                return CKR_UNWRAPPING_KEY_TYPE_INCONSISTENT;
        if (!u->unwrap)
                return CKR_KEY_FUNCTION_NOT_PERMITTED;
        if (!tmpl_ulong(tmpl, n, CKA_CLASS, &cls) || cls != CKO_SECRET_KEY)
                return CKR_TEMPLATE_INCONSISTENT;
        if (guards_sensitive(u) && !tmpl_bool(tmpl, n, CKA_SENSITIVE, false))
                return CKR_TEMPLATE_INCONSISTENT;
        return CKR_OK;
}

CK_RV core_unwrap_key(struct core_client *cl, CK_SESSION_HANDLE h, CK_MECHANISM_PTR mech, CK_OBJECT_HANDLE ukey,
                      CK_BYTE_PTR in, CK_ULONG in_len, CK_ATTRIBUTE_PTR tmpl, CK_ULONG n,
                      CK_OBJECT_HANDLE_PTR ret) {
        struct session *s;
        bool args = mech && (in || !in_len) && (!mech->ulParameterLen || mech->pParameter);
        CK_RV rv = make_begin(cl, h, args && ret, tmpl, n, &s);
        if (rv != CKR_OK)
                return rv;
        struct tok *k = s->tok;
        bool persistent = tmpl_bool(tmpl, n, CKA_TOKEN, false);
        struct key_facts u;
        if ((rv = wrap_mech_ok(k, mech, false)) != CKR_OK || (rv = tok_load(k)) != CKR_OK)
                goto out;
        if (!key_facts_get(cl, k, ukey, &u))
                rv = CKR_UNWRAPPING_KEY_HANDLE_INVALID;
        else if (persistent && !(s->flags & CKF_RW_SESSION))
                rv = CKR_SESSION_READ_ONLY;
        else
                rv = unwrap_policy(mech, &u, tmpl, n, is_user(cl, k));
        if (rv != CKR_OK)
                goto out;
        struct dobj d;
        memset(&d, 0, sizeof d);
        tok_lock(k);
        int r = k->ops->unwrap_key(k->t, u.id, mech, in, in_len, tmpl, n, persistent, &d);
        if (r == -EBADMSG || r == -ERANGE) {
                tok_unlock(k);
                rv = r == -EBADMSG ? CKR_WRAPPED_KEY_INVALID : CKR_WRAPPED_KEY_LEN_RANGE;
        } else
                rv = make_end(cl, s, persistent, r, &d, ret);
        audit_object(cl, k, tmpl, n, false, rv);
out:
        session_put(s);
        return rv;
}
