/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The driver contract: what every token type (soft token, USB/PIV, BLE/PIV,
 * the paired phone) implements, and what the daemon gives it.
 *
 * The daemon's core (daemon/core.c) owns PKCS#11 semantics: slots, sessions,
 * per-client login state, object handles, find, attribute access rules,
 * multi-part operations, hashing and padding for combined mechanisms
 * (CKM_SHA256_RSA_PKCS -> hash + DigestInfo + CKM_RSA_PKCS), verify and
 * encrypt with public keys (daemon side, mbedTLS).  A driver only does what
 * needs the token: describe itself, list its objects, check PINs, create and
 * destroy objects, generate keys, and run raw private-key operations.
 *
 * Errors: every op returns 0 or a negative errno.  The core maps them to
 * CK_RV (core.c: rv_from_errno) as follows; use these and no others:
 *   -ENODEV       CKR_DEVICE_REMOVED        the device is gone
 *   -EIO          CKR_DEVICE_ERROR          I/O or device failure
 *   -ENOMEM       CKR_HOST_MEMORY
 *   -ENOSPC       CKR_DEVICE_MEMORY         token full
 *   -EACCES       CKR_PIN_INCORRECT         wrong PIN (tries left updated in get_info)
 *   -EKEYREVOKED  CKR_PIN_LOCKED            PIN blocked
 *   -EKEYREJECTED CKR_PIN_INVALID           PIN with invalid characters
 *   -EMSGSIZE     CKR_PIN_LEN_RANGE         PIN too short/long
 *   -EPERM        CKR_USER_NOT_LOGGED_IN    needs login first
 *   -EROFS        CKR_TOKEN_WRITE_PROTECTED
 *   -ENOENT       CKR_OBJECT_HANDLE_INVALID object id unknown
 *   -ENOTSUP      CKR_MECHANISM_INVALID     mechanism not supported
 *   -EBADR        CKR_MECHANISM_PARAM_INVALID
 *   -ENOKEY       CKR_KEY_TYPE_INCONSISTENT key cannot do this mechanism
 *   -EKEYEXPIRED  CKR_KEY_FUNCTION_NOT_PERMITTED (e.g. CKA_SIGN false)
 *   -ERANGE       CKR_DATA_LEN_RANGE        input length wrong for the key
 *   -EBADMSG      CKR_ENCRYPTED_DATA_INVALID (decrypt) / CKR_DATA_INVALID
 *   -ENOBUFS      CKR_BUFFER_TOO_SMALL      (*outlen set to the size needed)
 *   -EINVAL       CKR_TEMPLATE_INCONSISTENT
 *   -ENODATA      CKR_TEMPLATE_INCOMPLETE
 *   -EDOM         CKR_ATTRIBUTE_VALUE_INVALID
 *   -EBADRQC      CKR_ATTRIBUTE_TYPE_INVALID
 *   -EALREADY     CKR_ATTRIBUTE_READ_ONLY
 *   -ECANCELED    CKR_FUNCTION_CANCELED     user cancelled (PIN pad, phone)
 *   -ETIMEDOUT    CKR_DEVICE_ERROR          (logged distinctly)
 *   anything else CKR_GENERAL_ERROR
 *
 * Threads: ops are called from the daemon's worker threads.  The core holds
 * the token's lock around every call into one token, except get_info()
 * (called at any time without it: it must be thread-safe and answer from
 * memory, so that info calls never wait for a busy token) and sign() and
 * decrypt() when ops->parallel_crypto is true: those may then run at the same
 * time as each other and as any other op of the same token, and the driver
 * makes that safe.  No op but get_info() is ever called on the daemon's event
 * loop thread, so the others may block on device I/O.
 *
 * Secrets: PINs arrive as (pointer, length), not NUL-terminated; a driver
 * that keeps one copies it into secure memory (common/secmem.h).  Never log
 * them. */
#pragma once

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/attrs.h"
#include "common/p11.h"

struct token;        /* a driver's token instance, opaque to the core */

/* Token description.  Cheap: from memory, never touching the device. */
struct token_desc {
        char label[33];          /* UTF-8, NUL-terminated, at most 32 bytes */
        char manufacturer[33];
        char model[17];
        char serial[17];
        const char *kind;        /* "soft", "usb", "ble", "phone": static string */
        CK_FLAGS flags;          /* CKF_RNG, CKF_LOGIN_REQUIRED, CKF_USER_PIN_INITIALIZED,
                                    CKF_TOKEN_INITIALIZED, CKF_PROTECTED_AUTHENTICATION_PATH,
                                    CKF_WRITE_PROTECTED, CKF_USER_PIN_COUNT_LOW,
                                    CKF_USER_PIN_FINAL_TRY, CKF_USER_PIN_LOCKED,
                                    CKF_SO_PIN_* ...; the core adds nothing */
        CK_ULONG min_pin, max_pin;
        CK_VERSION hw, fw;
        int user_tries_left;     /* -1 unknown */
        int user_tries_max;      /* -1 unknown */
        int so_tries_left;       /* -1 unknown */
        int so_tries_max;        /* -1 unknown */
};

/* *dst = *src under lock: how a driver publishes its token_desc snapshot
 * and how get_info reads it, both under the mutex that guards it. */
void token_desc_copy(pthread_mutex_t *lock, struct token_desc *dst, const struct token_desc *src);

/* One object as the driver reports it. */
struct dobj {
        uint64_t id;             /* stable for the token's life, never 0 */
        struct nattrs attrs;     /* every attribute a client may read: CKA_CLASS,
                                    CKA_TOKEN, CKA_PRIVATE, CKA_LABEL, CKA_ID, key
                                    type and public parts, CKA_SENSITIVE,
                                    CKA_EXTRACTABLE, capability flags ... but never
                                    secret key material */
};

void dobj_done(struct dobj *o);
/* Frees an array of n objects; accepts NULL; returns NULL. */
struct dobj *dobj_free_array(struct dobj *v, size_t n);

/* A raw mechanism the token itself performs. */
struct driver_mech {
        CK_MECHANISM_TYPE type;
        CK_ULONG min_key, max_key;  /* bits */
        CK_FLAGS flags;             /* CKF_SIGN, CKF_DECRYPT, CKF_GENERATE_KEY_PAIR, CKF_HW,
                                       CKF_EC_F_P, CKF_EC_NAMEDCURVE, CKF_EC_UNCOMPRESS; for
                                       secret keys (all run by the driver) also CKF_GENERATE,
                                       CKF_ENCRYPT, CKF_VERIFY, CKF_WRAP, CKF_UNWRAP */
};

struct driver_ops {
        const char *name;             /* "soft", "piv", ... */
        bool parallel_crypto;         /* see "Threads" above */
        /* A write (create, destroy, generate) may change or remove other
         * objects than the one written (a card slot holds one key and one
         * certificate: generating a key replaces the slot's key and drops
         * its certificate).  The core then reads the whole list again after
         * each write and matches it by object id, keeping the handles of
         * the objects that stay. */
        bool writes_affect_others;

        /* Required. */
        int (*get_info)(struct token *t, struct token_desc *ret);
        /* Required. The raw mechanisms the token performs; the array is
         * owned by the driver and lives as long as the token.  The core adds
         * the combined ones it can build on them (hash-then-sign). */
        int (*get_mechanisms)(struct token *t, const struct driver_mech **ret, size_t *ret_n);
        /* Required. Every object, public and private (CKA_PRIVATE objects
         * included: the core hides them from clients not logged in).
         * Returns a malloc'd array (free with dobj_free_array). */
        int (*load_objects)(struct token *t, struct dobj **ret, size_t *ret_n);

        /* Checks the PIN and puts the token in the logged-in state for that
         * user type (CKU_SO, CKU_USER, CKU_CONTEXT_SPECIFIC).  Called for every
         * client login, also when the token is already logged in for another
         * client: the PIN is always verified. */
        int (*login)(struct token *t, CK_USER_TYPE user, const char *pin, size_t pin_len);
        /* Drops the token's logged-in state: called when the last logged-in
         * client logs out or goes away. */
        int (*logout)(struct token *t);

        /* Optional (NULL: CKR_FUNCTION_NOT_SUPPORTED). */
        int (*init_token)(struct token *t, const char *so_pin, size_t so_pin_len, const char *label);
        /* Called with CKU_SO logged in: sets the user PIN and unblocks it. */
        int (*init_pin)(struct token *t, const char *pin, size_t pin_len);
        /* user: CKU_USER or CKU_SO (whoever is logged in, or CKU_USER when
         * nobody is). */
        int (*set_pin)(struct token *t, CK_USER_TYPE user, const char *old_pin, size_t old_len,
                       const char *new_pin, size_t new_len);

        /* Creates an object from a client template (already checked by the
         * core to have a CKA_CLASS).  persistent is CKA_TOKEN: false objects
         * live in the driver's memory until destroy_object (the core destroys
         * them when their session closes).  Fills *ret with the new object
         * as load_objects would list it (sensitive values removed). */
        int (*create_object)(struct token *t, const CK_ATTRIBUTE *tmpl, CK_ULONG n, bool persistent,
                             struct dobj *ret);
        int (*destroy_object)(struct token *t, uint64_t id);
        /* C_CopyObject (optional): a new object, a session object unless
         * persistent, with object id's attributes changed by the template
         * (-EALREADY for a change C_CopyObject may not make); fills *ret as
         * create_object does.  The core has checked CKA_COPYABLE, the
         * session and the login. */
        int (*copy_object)(struct token *t, uint64_t id, const CK_ATTRIBUTE *tmpl, CK_ULONG n, bool persistent,
                           struct dobj *ret);
        /* Changes attributes; fills *ret_attrs with the object's new full
         * attribute list. */
        int (*set_attributes)(struct token *t, uint64_t id, const CK_ATTRIBUTE *tmpl, CK_ULONG n,
                              struct nattrs *ret_attrs);
        int (*generate_key_pair)(struct token *t, const CK_MECHANISM *mech,
                                 const CK_ATTRIBUTE *pub_tmpl, CK_ULONG pub_n,
                                 const CK_ATTRIBUTE *priv_tmpl, CK_ULONG priv_n,
                                 struct dobj *ret_pub, struct dobj *ret_priv);

        /* C_GenerateKey (optional): a secret key, a session object unless
         * persistent; fills *ret as create_object does.  The core has
         * checked the mechanism (CKF_GENERATE), the session and the login. */
        int (*generate_key)(struct token *t, const CK_MECHANISM *mech, const CK_ATTRIBUTE *tmpl, CK_ULONG n,
                            bool persistent, struct dobj *ret);
        /* C_DigestKey (optional): hands secret key id's value to feed (which
         * hashes it and returns 0 or a negative errno) and nothing else;
         * -ENOKEY when id is not a secret key. */
        int (*digest_key)(struct token *t, uint64_t key, int (*feed)(void *ctx, const uint8_t *p, size_t n),
                          void *ctx);

        /* C_WrapKey (optional): secret key `key` encrypted under wrapping
         * key wkey (an AES key: CKM_AES_KEY_WRAP, CKM_AES_KEY_WRAP_PAD; an
         * RSA public key: CKM_RSA_PKCS, CKM_RSA_PKCS_OAEP).  out == NULL:
         * *outlen the size; -ENOBUFS as for sign; -ERANGE a key of a length
         * the mechanism cannot wrap.  The core has checked the rules
         * (CKA_WRAP, CKA_EXTRACTABLE, CKA_WRAP_WITH_TRUSTED, sensitivity). */
        int (*wrap_key)(struct token *t, uint64_t wkey, const CK_MECHANISM *mech, uint64_t key, uint8_t *out,
                        size_t *outlen);
        /* C_UnwrapKey (optional): a new secret key, its value in decrypted
         * with ukey (an AES or RSA private key), its attributes from the
         * template; fills *ret as create_object does.  -EBADMSG: the wrapped
         * key does not open; -ERANGE: its length is wrong. */
        int (*unwrap_key)(struct token *t, uint64_t ukey, const CK_MECHANISM *mech, const uint8_t *in,
                          size_t in_len, const CK_ATTRIBUTE *tmpl, CK_ULONG n, bool persistent, struct dobj *ret);

        /* Raw private-key operations with a mechanism from get_mechanisms:
         * CKM_RSA_PKCS (input: the DigestInfo or data to pad, <= k-11),
         * CKM_RSA_PKCS_PSS (input: the hash; params CK_RSA_PKCS_PSS_PARAMS),
         * CKM_RSA_X_509, CKM_ECDSA (input: the hash; output r||s, each the
         * size of the order), CKM_RSA_PKCS_OAEP (decrypt).
         * out == NULL: set *outlen to the maximum output size, compute nothing.
         * *outlen too small: -ENOBUFS with *outlen set to the size needed. */
        int (*sign)(struct token *t, uint64_t key, const CK_MECHANISM *mech, const uint8_t *in,
                    size_t in_len, uint8_t *out, size_t *outlen);
        int (*decrypt)(struct token *t, uint64_t key, const CK_MECHANISM *mech, const uint8_t *in,
                       size_t in_len, uint8_t *out, size_t *outlen);
        /* Optional: encryption with a secret key (AES), as decrypt; the
         * core encrypts with public keys itself.  Secret keys use sign
         * (HMAC) and decrypt (AES) too, whose out == NULL query then gives
         * the output size for in_len bytes; the core has checked the
         * mechanism's parameter (its size, the IV and GCM tag lengths). */
        int (*encrypt)(struct token *t, uint64_t key, const CK_MECHANISM *mech, const uint8_t *in,
                       size_t in_len, uint8_t *out, size_t *outlen);
        /* Optional: the token's RNG (NULL: the core's own DRBG). */
        int (*random)(struct token *t, uint8_t *out, size_t n);

        /* Flushes and frees the token; accepts NULL. */
        void (*free)(struct token *t);
};

/* ---- Drivers and the registry ----
 *
 * A driver is one kind of medium (soft tokens, USB keys, BLE keys, the
 * phone).  The daemon walks a table of them (drivers/table.c): a new driver
 * is a folder under drivers/ and one line in that table.  The daemon's
 * registry (daemon/registry.c) gives each driver a host, starts it, and
 * routes management requests (create, delete, describe) to the driver that
 * added the token; it knows nothing of a driver's slot keys or files.
 *
 * Threads: start/stop/free run on the daemon's main thread.  A driver may
 * call the host from any thread (its own discovery thread, a worker), but
 * not from inside ops it is serving for the same token.  create, delete and
 * describe run on a worker thread; the registry serialises them with the
 * driver's own token_added/token_removed calls (one registry lock,
 * recursive: delete may call token_removed), so a token named to delete or
 * describe stays alive for the call. */

struct driver_host;

/* What a user asks for when creating a medium (netca-tool token create). */
struct driver_create_args {
        const char *label;
        const char *pin;           /* not NUL-terminated: pin_len bytes */
        size_t pin_len;
        const char *so_pin;
        size_t so_pin_len;
        unsigned max_tries;        /* 0: the driver's default */
};

/* describe's output: one string member per call ("path", ...). */
typedef void (*driver_put_fn)(void *ctx, const char *key, const char *value);

struct driver {
        const char *name;          /* "soft", "usb", ...: settings are kept under "<name>." */
        /* Required.  Finds the tokens present (token_added for each) and,
         * for hotplug media, starts watching.  The driver keeps its state in
         * host->driver_data.  -ECANCELED: turned off by configuration (the
         * daemon logs it at info level); other errors are logged and the
         * daemon runs without this driver. */
        int (*start)(struct driver_host *host);
        /* Optional.  After it returns no token arrives or leaves. */
        void (*stop)(struct driver_host *host);
        /* Optional.  Frees the driver's state; called after the daemon freed
         * the tokens (their transports may hold the driver's devices). */
        void (*free)(struct driver_host *host);

        /* Optional (NULL: the request fails with -EPERM).  Creates a new
         * token and adds it (token_added); *ret_slot its slot, *ret_where
         * (malloc'd, may stay NULL) where it lives, for the user.  Errors:
         * -EINVAL bad label, -EMSGSIZE PIN length, -EIO storage. */
        int (*create)(struct driver_host *host, const struct driver_create_args *a, CK_SLOT_ID *ret_slot,
                      char **ret_where);
        /* Optional (NULL: -EPERM).  Deletes token t for good: removes it from
         * its slot (token_removed) and its storage.  *ret_where as for
         * create. */
        int (*delete)(struct driver_host *host, struct token *t, char **ret_where);
        /* Optional.  Adds what a listing shows about t beyond its token_desc
         * (a soft token's file).  Cheap, from memory. */
        void (*describe)(struct driver_host *host, struct token *t, driver_put_fn put, void *ctx);
};

/* What the daemon gives a driver. */
struct driver_host {
        void *userdata;            /* the registry's */
        void *driver_data;         /* the driver's own state */
        const struct driver *driver;
        const char *data_dir;      /* the daemon's data directory (0700) */
        /* Hand a new token to the daemon.  slot_key is a stable identity
         * the driver chooses ("soft:<file>", "usb:<serial>") so a token that
         * comes back gets the slot id it had.  The daemon owns t from here on
         * (ops->free), also on failure.  ret_slot may be NULL. */
        int (*token_added)(struct driver_host *h, const struct driver_ops *ops, struct token *t,
                           const char *slot_key, CK_SLOT_ID *ret_slot);
        /* The device is gone: the daemon fails its pending ops with
         * CKR_DEVICE_REMOVED, empties the slot and later calls ops->free. */
        void (*token_removed)(struct driver_host *h, struct token *t);
        /* The token's info (flags, PIN counters, label) changed by itself:
         * clients are told (a slot event). */
        void (*token_changed)(struct driver_host *h, struct token *t);
        /* The driver's settings in the daemon's state database, under
         * "<driver name>.<key>".  get: *ret malloc'd, -ENOENT unset. */
        int (*setting_get)(struct driver_host *h, const char *key, char **ret);
        int (*setting_set)(struct driver_host *h, const char *key, const char *value);
};
