/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Inside the PIV driver: shared by piv.c (card I/O, objects, PINs,
 * sign/decrypt) and piv-write.c (management key, key generation, PUT DATA).
 * Every function here is called with t->lock held. */
#pragma once

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include <mbedtls/pk.h>

#include "piv.h"

#define PIV_NSLOTS 24

/* PIV algorithm identifiers (SP 800-78-4). */
#define PIV_ALG_RSA1024 0x06
#define PIV_ALG_RSA2048 0x07
#define PIV_ALG_RSA3072 0x05
#define PIV_ALG_RSA4096 0x16
#define PIV_ALG_ECC256 0x11
#define PIV_ALG_ECC384 0x14

/* Object ids: kind << 8 | key reference. */
#define PIV_OBJ_CERT 1
#define PIV_OBJ_PUB 2
#define PIV_OBJ_PRIV 3

struct piv_slot_def {
        uint8_t ref;             /* key reference: 9A, 9C, 9D, 9E, 82..95 */
        uint32_t tag;            /* its certificate's data object */
        uint8_t id;              /* CKA_ID (OpenSC's numbering) */
        const char *short_name;  /* NULL for the retired slots */
        const char *long_name;
};
extern const struct piv_slot_def piv_slot_defs[PIV_NSLOTS];

struct piv_key {
        const struct piv_slot_def *def;
        bool present;            /* listed: has a certificate, or was generated now */
        bool local;              /* generated on the card during this insertion */
        bool rsa;
        uint8_t alg;             /* PIV_ALG_* */
        size_t size;             /* RSA modulus bytes, or EC order bytes */
        mbedtls_pk_context pk;   /* the public key */
        uint8_t *cert;           /* DER, NULL when none */
        size_t cert_len;
};

struct token {
        pthread_mutex_t lock;
        pthread_mutex_t info_lock;   /* guards info only (get_info runs without lock) */
        struct token_desc info;
        struct apdu_transport *tr;
        bool gone;                   /* the transport said -ENODEV */
        const char *kind;
        char serial[17];
        char label[33];

        struct piv_key keys[PIV_NSLOTS];

        int pin_tries, puk_tries;            /* -1 unknown */
        int pin_tries_seen, puk_tries_seen;  /* highest counter seen: the limit, probably */
        bool pin_failed, puk_failed;         /* a wrong try since the last success */
        bool user_logged, so_logged;
        char *puk;                           /* secure memory, while the SO is logged in */
        size_t puk_len;

        enum piv_mgmt_alg mgmt_alg;
        uint8_t *mgmt_key;                   /* secure memory */
        size_t mgmt_len;
};

/* piv.c */
int piv_errno_from_sw(uint16_t sw);
/* One card command (apdu_transceive with CLA 00); marks the token gone on
 * -ENODEV and refuses every command after that. */
int piv_cmd(struct token *t, uint8_t ins, uint8_t p1, uint8_t p2, const uint8_t *data, size_t len, size_t le,
            uint8_t *out, size_t cap, size_t *outlen, uint16_t *sw);
/* piv_cmd with Le maximal for a response that must fit in cap bytes: a
 * longer one is -EIO. */
int piv_cmd_fit(struct token *t, uint8_t ins, uint8_t p1, uint8_t p2, const uint8_t *data, size_t len,
                uint8_t *out, size_t cap, size_t *outlen, uint16_t *sw);
/* GET DATA: the contents of the object's 53 template (malloc'd).  -ENOENT absent. */
int piv_get_data(struct token *t, uint32_t tag, uint8_t **ret, size_t *ret_len);
/* PUT DATA: writes 53 { contents } (len 0 deletes).  -EROFS not authenticated. */
int piv_put_data(struct token *t, uint32_t tag, const uint8_t *contents, size_t len);
int piv_general_auth(struct token *t, uint8_t alg, uint8_t ref, uint8_t tag, const uint8_t *in, size_t in_len,
                     uint8_t *out, size_t cap, size_t *outlen);
int piv_ecdsa_der_to_raw(const uint8_t *der, size_t len, uint8_t *out, size_t n);
void piv_publish_info(struct token *t);
void piv_key_clear(struct piv_key *k);
int piv_key_set_cert(struct piv_key *k, const uint8_t *der, size_t len);
int piv_key_set_alg(struct piv_key *k);
struct piv_key *piv_key_by_ref(struct token *t, uint8_t ref);
/* One object (cert, public or private key) as load_objects lists it. */
int piv_build_object(struct token *t, uint64_t id, struct dobj *ret);

/* piv-write.c */
int piv_mgmt_auth(struct token *t);
int piv_create_object(struct token *t, const CK_ATTRIBUTE *tmpl, CK_ULONG n, bool persistent, struct dobj *ret);
int piv_destroy_object(struct token *t, uint64_t id);
int piv_generate_key_pair(struct token *t, const CK_MECHANISM *mech, const CK_ATTRIBUTE *pub_tmpl, CK_ULONG pub_n,
                          const CK_ATTRIBUTE *priv_tmpl, CK_ULONG priv_n, struct dobj *ret_pub,
                          struct dobj *ret_priv);
