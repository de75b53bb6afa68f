/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Writes the seed corpus of fuzz-wire: valid frames for several ops (requests,
 * replies, an event, an error reply), written with the real encoder, plus some
 * malformed ones.  Run by hand when the op table changes:
 *     build/tests/fuzz/gen-wire-corpus tests/fuzz/corpus/fuzz-wire */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/util.h"
#include "common/wire.h"

static const char *outdir;

static void write_file(const char *name, const void *p, size_t n) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", outdir, name);
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (fd < 0 || write(fd, p, n) != (ssize_t)n) {
                fprintf(stderr, "%s: %s\n", path, strerror(errno));
                exit(1);
        }
        close(fd);
}

static void emit(const char *name, struct wire_msg *m) {
        int r = wire_msg_finish(m);
        if (r < 0) {
                fprintf(stderr, "%s: encoding failed: %s\n", name, strerror(-r));
                exit(1);
        }
        write_file(name, m->buf.data, m->buf.len);
        wire_msg_done(m);
}

int main(int argc, char **argv) {
        struct wire_msg m;
        static const char label[] = "demo token";
        CK_BBOOL yes = CK_TRUE;
        CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
        CK_KEY_TYPE kt = CKK_EC;
        static const uint8_t p256_oid[] = { 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07 };
        CK_ATTRIBUTE tmpl[] = {
                { CKA_CLASS, &cls, sizeof cls },
                { CKA_KEY_TYPE, &kt, sizeof kt },
                { CKA_TOKEN, &yes, sizeof yes },
                { CKA_LABEL, (void *)label, sizeof label - 1 },
                { CKA_ID, NULL, 0 },
        };
        CK_ATTRIBUTE pub_tmpl[] = {
                { CKA_EC_PARAMS, (void *)p256_oid, sizeof p256_oid },
                { CKA_VERIFY, &yes, sizeof yes },
        };
        uint8_t valbuf[16] = "0123456789abcdef";
        CK_ATTRIBUTE query[] = {
                { CKA_LABEL, valbuf, sizeof valbuf },
                { CKA_VALUE, NULL, 0 },
                { CKA_MODULUS, valbuf, 4 },
        };
        CK_ATTRIBUTE result[] = {
                { CKA_LABEL, valbuf, 10 },
                { CKA_VALUE, NULL, CK_UNAVAILABLE_INFORMATION },
                { CKA_MODULUS, NULL, 256 },
        };
        CK_MECHANISM mech_ecdsa = { CKM_ECDSA_SHA256, NULL, 0 };
        CK_RSA_PKCS_PSS_PARAMS pss = { CKM_SHA256, CKG_MGF1_SHA256, 32 };
        CK_MECHANISM mech_pss = { CKM_SHA256_RSA_PKCS_PSS, &pss, sizeof pss };
        CK_MECHANISM mech_gen = { CKM_EC_KEY_PAIR_GEN, NULL, 0 };
        CK_ULONG slots[] = { 0, 1, 7 };
        CK_ULONG objs[] = { 1, 2, 3, 0x80000001 };
        CK_SLOT_INFO si;
        CK_TOKEN_INFO ti;
        CK_SESSION_INFO ses = { 1, CKS_RW_USER_FUNCTIONS, CKF_RW_SESSION | CKF_SERIAL_SESSION, 0 };
        CK_MECHANISM_INFO mi = { 256, 384, CKF_SIGN | CKF_VERIFY | CKF_EC_F_P };

        if (argc != 2) {
                fprintf(stderr, "usage: %s OUTDIR\n", argv[0]);
                return 2;
        }
        outdir = argv[1];

        memset(&si, 0, sizeof si);
        pad_field(si.slotDescription, sizeof si.slotDescription, "NETCA soft token");
        pad_field(si.manufacturerID, sizeof si.manufacturerID, "NETCA");
        si.flags = CKF_TOKEN_PRESENT;
        si.hardwareVersion.major = 1;
        memset(&ti, 0, sizeof ti);
        pad_field(ti.label, sizeof ti.label, label);
        pad_field(ti.manufacturerID, sizeof ti.manufacturerID, "NETCA");
        pad_field(ti.model, sizeof ti.model, "soft");
        pad_field(ti.serialNumber, sizeof ti.serialNumber, "0001");
        ti.flags = CKF_TOKEN_INITIALIZED | CKF_LOGIN_REQUIRED | CKF_USER_PIN_INITIALIZED | CKF_RNG;
        ti.ulMaxSessionCount = CK_EFFECTIVELY_INFINITE;
        ti.ulMaxPinLen = 64;
        ti.ulMinPinLen = 4;
        ti.ulTotalPublicMemory = CK_UNAVAILABLE_INFORMATION;
        memcpy(ti.utcTime, "2026112204000000", 16);

        wire_msg_init_write(&m, WIRE_OP_HELLO, 1, 0);
        wire_put_u64(&m, WIRE_VERSION);
        wire_put_u64(&m, WIRE_CAP_EVENTS | WIRE_CAP_MGMT);
        wire_put_string(&m, "fuzz-seed");
        emit("hello-req", &m);

        wire_msg_init_write(&m, WIRE_OP_HELLO, 1, WIRE_F_REPLY);
        wire_put_u64(&m, CKR_OK);
        wire_put_u64(&m, WIRE_VERSION);
        wire_put_u64(&m, WIRE_CAP_EVENTS);
        wire_put_string(&m, "netcad 0.1.0");
        emit("hello-rep", &m);

        wire_msg_init_write(&m, WIRE_OP_PING, 2, 0);
        emit("ping-req", &m);

        wire_msg_init_write(&m, WIRE_OP_EVENT, 0, WIRE_F_EVENT);
        wire_put_u64(&m, WIRE_EV_SLOT_ADDED);
        wire_put_u64(&m, 3);
        wire_put_u64(&m, 0);
        emit("event", &m);

        wire_msg_init_write(&m, WIRE_OP_GET_SLOT_LIST, 3, 0);
        wire_put_u8(&m, CK_TRUE);
        wire_put_outreq(&m, false, 8);
        emit("get-slot-list-req", &m);

        wire_msg_init_write(&m, WIRE_OP_GET_SLOT_LIST, 3, WIRE_F_REPLY);
        wire_put_u64(&m, CKR_OK);
        wire_put_outlist(&m, 3, slots, 3);
        emit("get-slot-list-rep", &m);

        wire_msg_init_write(&m, WIRE_OP_GET_SLOT_LIST, 4, WIRE_F_REPLY);
        wire_put_u64(&m, CKR_OK);
        wire_put_outlist(&m, 3, NULL, 0);
        emit("get-slot-list-rep-count", &m);

        wire_msg_init_write(&m, WIRE_OP_GET_SLOT_INFO, 5, WIRE_F_REPLY);
        wire_put_u64(&m, CKR_OK);
        wire_put_slot_info(&m, &si);
        emit("get-slot-info-rep", &m);

        wire_msg_init_write(&m, WIRE_OP_GET_TOKEN_INFO, 6, WIRE_F_REPLY);
        wire_put_u64(&m, CKR_OK);
        wire_put_token_info(&m, &ti);
        emit("get-token-info-rep", &m);

        wire_msg_init_write(&m, WIRE_OP_GET_MECHANISM_INFO, 7, WIRE_F_REPLY);
        wire_put_u64(&m, CKR_OK);
        wire_put_mech_info(&m, &mi);
        emit("get-mechanism-info-rep", &m);

        wire_msg_init_write(&m, WIRE_OP_GET_SESSION_INFO, 8, WIRE_F_REPLY);
        wire_put_u64(&m, CKR_OK);
        wire_put_session_info(&m, &ses);
        emit("get-session-info-rep", &m);

        wire_msg_init_write(&m, WIRE_OP_LOGIN, 9, 0);
        wire_put_u64(&m, 1);
        wire_put_u64(&m, CKU_USER);
        wire_put_blob(&m, "000000", 6);
        emit("login-req", &m);

        wire_msg_init_write(&m, WIRE_OP_CREATE_OBJECT, 10, 0);
        wire_put_u64(&m, 1);
        wire_put_attrs(&m, tmpl, ELEMENTSOF(tmpl));
        emit("create-object-req", &m);

        wire_msg_init_write(&m, WIRE_OP_GET_ATTRIBUTE_VALUE, 11, 0);
        wire_put_u64(&m, 1);
        wire_put_u64(&m, 2);
        wire_put_attr_query(&m, query, ELEMENTSOF(query));
        emit("get-attribute-value-req", &m);

        wire_msg_init_write(&m, WIRE_OP_GET_ATTRIBUTE_VALUE, 11, WIRE_F_REPLY);
        wire_put_u64(&m, CKR_ATTRIBUTE_SENSITIVE);
        wire_put_attr_result(&m, result, ELEMENTSOF(result));
        emit("get-attribute-value-rep", &m);

        wire_msg_init_write(&m, WIRE_OP_FIND_OBJECTS, 12, WIRE_F_REPLY);
        wire_put_u64(&m, CKR_OK);
        wire_put_u64_array(&m, objs, ELEMENTSOF(objs));
        emit("find-objects-rep", &m);

        wire_msg_init_write(&m, WIRE_OP_SIGN_INIT, 13, 0);
        wire_put_u64(&m, 1);
        wire_put_mechanism(&m, &mech_ecdsa);
        wire_put_u64(&m, 5);
        emit("sign-init-req", &m);

        wire_msg_init_write(&m, WIRE_OP_SIGN_INIT, 14, 0);
        wire_put_u64(&m, 1);
        wire_put_mechanism(&m, &mech_pss);
        wire_put_u64(&m, 6);
        emit("sign-init-pss-req", &m);

        wire_msg_init_write(&m, WIRE_OP_SIGN, 15, 0);
        wire_put_u64(&m, 1);
        wire_put_blob(&m, "hello world", 11);
        wire_put_outreq(&m, true, 0);
        emit("sign-req-null", &m);

        wire_msg_init_write(&m, WIRE_OP_SIGN, 15, WIRE_F_REPLY);
        wire_put_u64(&m, CKR_OK);
        wire_put_outbytes(&m, 8, "\x30\x06\x02\x01\x01\x02\x01\x02");
        emit("sign-rep", &m);

        wire_msg_init_write(&m, WIRE_OP_SIGN, 16, WIRE_F_REPLY);
        wire_put_u64(&m, CKR_BUFFER_TOO_SMALL);
        wire_put_outbytes(&m, 64, NULL);
        emit("sign-rep-too-small", &m);

        wire_msg_init_write(&m, WIRE_OP_GENERATE_KEY_PAIR, 17, 0);
        wire_put_u64(&m, 1);
        wire_put_mechanism(&m, &mech_gen);
        wire_put_attrs(&m, pub_tmpl, ELEMENTSOF(pub_tmpl));
        wire_put_attrs(&m, tmpl, ELEMENTSOF(tmpl));
        emit("generate-key-pair-req", &m);

        wire_msg_init_write(&m, WIRE_OP_GENERATE_RANDOM, 18, WIRE_F_REPLY);
        wire_put_u64(&m, CKR_OK);
        wire_put_blob(&m, valbuf, sizeof valbuf);
        emit("generate-random-rep", &m);

        wire_msg_init_write(&m, WIRE_OP_INIT_TOKEN, 19, 0);
        wire_put_u64(&m, 0);
        wire_put_blob(&m, "12345678", 8);
        wire_put_blob(&m, NULL, 0);
        emit("init-token-req", &m);

        wire_msg_init_write(&m, WIRE_OP_SIGN, 20, WIRE_F_REPLY | WIRE_F_ERROR);
        wire_put_u64(&m, CKR_ARGUMENTS_BAD);
        emit("error-rep", &m);

        wire_msg_init_write(&m, WIRE_OP_MGMT_TOKEN_CREATE_SOFT, 21, 0);
        wire_put_json(&m, "{\"label\":\"demo\",\"pin\":\"123456\",\"so_pin\":\"12345678\"}");
        emit("mgmt-token-create-soft-req", &m);

        wire_msg_init_write(&m, WIRE_OP_MGMT_TOKEN_LIST, 21, WIRE_F_REPLY);
        wire_put_u64(&m, 0);
        wire_put_json(&m, "{\"tokens\":[]}");
        emit("mgmt-token-list-rep", &m);

        /* Malformed frames. */
        static const uint8_t short_len[] = { 0, 0, 0, 4, 0, 0, 0, 1, 0, 2, 0, 0 };
        write_file("bad-length-under-8", short_len, sizeof short_len);
        static const uint8_t huge[] = { 0x7f, 0xff, 0xff, 0xff, 0, 0, 0, 1, 0, 2, 0, 0 };
        write_file("bad-length-over-max", huge, sizeof huge);
        static const uint8_t unknown_op[] = { 0, 0, 0, 8, 0, 0, 0, 1, 0x12, 0x34, 0, 0 };
        write_file("bad-unknown-op", unknown_op, sizeof unknown_op);
        static const uint8_t truncated[] = { 0, 0, 0, 20, 0, 0, 0, 1, 0, 28, 0, 0, 0, 0 };
        write_file("bad-truncated", truncated, sizeof truncated);
        /* LOGIN whose PIN blob claims more bytes than the frame holds. */
        static const uint8_t blob_over[] = {
                0, 0, 0, 28, 0, 0, 0, 1, 0, 28, 0, 0, 0,    0,    0,    0,
                0, 0, 0, 1,  0, 0, 0, 0, 0, 0,  0, 1, 0xff, 0xff, 0xff, 0xf0,
        };
        write_file("bad-blob-over-end", blob_over, sizeof blob_over);
        /* FIND_OBJECTS reply claiming 2^31 handles. */
        static const uint8_t list_over[] = {
                0, 0, 0, 20, 0, 0, 0, 1, 0, 35, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0x80, 0, 0, 0,
        };
        write_file("bad-list-count", list_over, sizeof list_over);
        /* PING with a trailing byte. */
        static const uint8_t trailing[] = { 0, 0, 0, 9, 0, 0, 0, 1, 0, 2, 0, 0, 0xaa };
        write_file("bad-trailing-byte", trailing, sizeof trailing);
        /* GET_SLOT_LIST request with is_null = 2. */
        static const uint8_t bad_outreq[] = {
                0, 0, 0, 18, 0, 0, 0, 1, 0, 16, 0, 0, 1, 2, 0, 0, 0, 0, 0, 0, 0, 8,
        };
        write_file("bad-outreq-flag", bad_outreq, sizeof bad_outreq);
        /* HELLO string with a NUL inside. */
        static const uint8_t nul_string[] = {
                0, 0, 0, 32, 0, 0, 0, 1, 0, 1, 0, 0, 0, 0, 0,   0, 0,   1,
                0, 0, 0, 0,  0, 0, 0, 0, 0, 3, 0, 0, 0, 4, 'a', 0, 'b', 'c',
        };
        write_file("bad-string-nul", nul_string, sizeof nul_string);
        write_file("empty", "", 0);
        return 0;
}
