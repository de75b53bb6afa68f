/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Fuzz target for the virtual PIV card's APDU parsing (ISO 7816 cases,
 * chaining, GET RESPONSE) and its TLV parsing (GET/PUT DATA, GENERAL
 * AUTHENTICATE, GENERATE) through vpiv_vpcd_message.
 *
 * Input: a sequence of vpcd messages, each a 2-byte big-endian length and a
 * payload (1-byte payloads are control messages), run against a fresh card
 * (RSA-2048 in 9A, P-256 with a certificate in 9C and 9E, P-384 in 82; PIN
 * 123456, default 3DES management key).  Two harness-only messages reach
 * the states behind authentication: the 1-byte payload 0xA5 runs a correct
 * mutual authentication with the management key.  GENERATE commands asking
 * for RSA (any 0x07 in the data) are skipped: a 2048-bit key generation
 * takes seconds and would only slow the fuzzer down.
 * Checks: every answer is at least a status word, fits the buffer and Ne;
 * a truncated input is not an error. */
#include <errno.h>
#include <mbedtls/des.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vpiv.h"

static const char key_rsa[] =
        "-----BEGIN PRIVATE KEY-----\n"
        "MIIEvgIBADANBgkqhkiG9w0BAQEFAASCBKgwggSkAgEAAoIBAQDffDXnTansiD9D\n"
        "A+bynABytPHSiEa4xma++4qV6RRhbsgO6whf6/5HD03NkIrFkX5ntuV3NmrBtJdS\n"
        "FtQXakKNyRPKfxl3D2TFNH8rXM2wwb424shZf2VYXYhxF+0Kd4FuFQDNLfUJZdkb\n"
        "CXWi19dB4N8G58Swo4Rf6lKd1e5RP3HY2/O3/27pAwJ7qHl3HrUU6gtDYX2jUUTh\n"
        "Bjp0B6MVGSwf8WBfdddq8lkqWJV9EBFzbqaHrQo4TaCUyH3lq7YlkxxbO5dp/DJS\n"
        "CGOCq331kRyXPKmomTCluucZz0fWUO8nxpXM6mxHJL+wZ7NpAjo3txKlv5xriZnR\n"
        "O11l7ZvHAgMBAAECggEAAVcUV6u+jh2PC47VbrUCx61QGewZSHhgG1sUzKtWJPNu\n"
        "HbDJHxIiNzjfRZFNU7v4nxSYsatQ3pJ/qc1bPjyz43fGN5ulgnJEL26OKKtozFuN\n"
        "EXUwsGC0MeB1tf/nuv1WeFuF4rUY2BKVR7U50F0s/Ecl7zuqkUiZvZ2BG1MyF6if\n"
        "3qtfbd156tDpVvcrupE5/qOcB0DIYBWrLvYiwsx6Ch14aHcVTzCTNx1B5gJHNpJg\n"
        "Y+BepKz1Zs+6olmzPcIZj6/DC2aPx1nWALWhF1R0BWFLAfDrr+uwVyp5oGxwdZU1\n"
        "jwNYxyOKgy7Xm57MMrB2hjQ6M/FxK9v2/KFAvR+/0QKBgQDy8M/eFJnBJIKdhpj6\n"
        "z/+8V0V5ug54N4OjVdesoHMVgWGGEL1BVwKh8DAe2SU62drkLBRewBTrNrW4lzt+\n"
        "ZYeQ3Q9XUwSCfD9XO7rZsJvd+KXEJQ/VhrclZ5Gnc4GEqYyU8NNB5w0VhQiJGgyK\n"
        "MZXFFE2O8ciDEqzSCZSjG49tnwKBgQDrf6pPdTWd8Y9Ga+8fuBYjK1X3PolUU6w8\n"
        "KpEYngK+sqcF22xJ2PkiI9CM3xcy//lF3ft9KjcDJVXTGApVL8v/pCbLcLIUVY+t\n"
        "yQaqaskLk9bmTHDQ+o3X4HrPBgQ7BJid0L4MlDteGngyYK1bDps4H6pjrGEz27R+\n"
        "b45iwehQ2QKBgCH8LhgTKa8rPFptCdmMX2opiz6MGJoYqgGfcJxllbPcdZgbn14U\n"
        "nfmpcBHgrqSc9VIWGINou4RsEt/PyDLWYTCSvCKrKmZWm0XIxUrOuf9DWW0nAiAM\n"
        "yHIjGu0h62xzi4cKaYM+n0XzZk5HppludlUrke39RN+RLTv0uyZWJKphAoGBAJpa\n"
        "a/t2fHUQXfMvTWUB2Gimv8q1D3fY+9vXnpB/CJeLKxQYtIpWjzxEMy4SDvebdPvJ\n"
        "OkvYfoQuVWltqWAaWuAs7EyNifrv9aNXTmomYa2X8dOyqIMgphWniXbln6I7KfjO\n"
        "V7KQ+bR9Luj+GsHC+hO4FYsM8gz2ZQA2CCJMrANJAoGBANWjUp4grLJi0MKdY9k/\n"
        "tNoyrGO0Vk1Vnoh+yDhaGUmeCwUIrwtYsofS/GlaJNIkr9U78//recvvPbm+Q1WL\n"
        "+hHmqLrrjNqZl2X1voaWxWKQQlJ56fUtQpN+3PgqLhyUyRkAseIAwMe6/lwqM7+y\n"
        "Aaz7ty6Z8N0g+Ja8r8Hg/F+i\n"
        "-----END PRIVATE KEY-----\n";
static const char key_p256[] =
        "-----BEGIN PRIVATE KEY-----\n"
        "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg1ilSKCxEE+bJd7b5\n"
        "c9x+I1vTgexTIInzdSev9jfBkFehRANCAAQ7plodz/od/m/9RibR2IsOykJjbmkX\n"
        "9WBlyl8WOAJ5gFUUduNvs/pIhd/pZcOFdCc8PkFLRCAZ0JKngn1ayqp8\n"
        "-----END PRIVATE KEY-----\n";
static const char key_p384[] =
        "-----BEGIN PRIVATE KEY-----\n"
        "MIG2AgEAMBAGByqGSM49AgEGBSuBBAAiBIGeMIGbAgEBBDCNcSAeRYWgC62H9C1z\n"
        "zS7+etw1WIgNwbUrUUC3TG/uilokiKZfXFmPQ91Ao5PCgxGhZANiAASQ0r8tRk/P\n"
        "hxdsnW1PcIGeUUKq7tb543bNnOjFFg/E4mmP78wLofQHAfK1l2ZTFItAyrzcUV51\n"
        "0sRDv0LzUKNyW0O2H1PVvySgHaL7n/CIZ0+VticQI1mTJHdLhVvAIzE=\n"
        "-----END PRIVATE KEY-----\n";
static const char crt_p256[] =
        "-----BEGIN CERTIFICATE-----\n"
        "MIIBczCCARmgAwIBAgIUOy70JXsxG/reMHpgDxPfr356DuowCgYIKoZIzj0EAwIw\n"
        "DzENMAsGA1UEAwwEZnV6ejAeFw0yNjEyMDEyMDAyNDhaFw0zNjExMjgyMDAyNDha\n"
        "MA8xDTALBgNVBAMMBGZ1enowWTATBgcqhkjOPQIBBggqhkjOPQMBBwNCAAQ7plod\n"
        "z/od/m/9RibR2IsOykJjbmkX9WBlyl8WOAJ5gFUUduNvs/pIhd/pZcOFdCc8PkFL\n"
        "RCAZ0JKngn1ayqp8o1MwUTAdBgNVHQ4EFgQUSkv4+qI8e3Owq7nVupfUZ8u1Qfgw\n"
        "HwYDVR0jBBgwFoAUSkv4+qI8e3Owq7nVupfUZ8u1QfgwDwYDVR0TAQH/BAUwAwEB\n"
        "/zAKBggqhkjOPQQDAgNIADBFAiEA/lzp8KPI84yeIsDDTh4GL0YhZVPTQd+bRmmt\n"
        "0lDnC0kCIFbs6+iT+9ou8rdeWtzkJKQFVMBFpBglgpxTGdmuzWvJ\n"
        "-----END CERTIFICATE-----\n";

static char card_dir[256];

static void put_file(const char *name, const char *text) {
        char path[512];
        snprintf(path, sizeof path, "%s/%s", card_dir, name);
        FILE *f = fopen(path, "we");
        if (!f || fputs(text, f) < 0 || fclose(f) != 0) {
                fprintf(stderr, "fuzz-vpiv: cannot write %s\n", path);
                abort();
        }
}

static void remove_card_dir(void) {
        static const char *names[] = { "card.conf", "9a.key.pem", "9c.key.pem", "9c.crt.pem",
                                       "9e.key.pem", "9e.crt.pem", "82.key.pem" };
        char path[512];
        for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
                snprintf(path, sizeof path, "%s/%s", card_dir, names[i]);
                unlink(path);
        }
        rmdir(card_dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
        (void)argc;
        (void)argv;
        const char *base = getenv("TMPDIR");
        snprintf(card_dir, sizeof card_dir, "%s/fuzz-vpiv-XXXXXX", base && *base ? base : "/tmp");
        if (!mkdtemp(card_dir))
                abort();
        put_file("card.conf", "pin = 123456\npuk = 12345678\nmgmt_alg = 3des\n"
                              "mgmt_key = 010203040506070801020304050607080102030405060708\n");
        put_file("9a.key.pem", key_rsa);
        put_file("9c.key.pem", key_p256);
        put_file("9c.crt.pem", crt_p256);
        put_file("9e.key.pem", key_p256);
        put_file("9e.crt.pem", crt_p256);
        put_file("82.key.pem", key_p384);
        atexit(remove_card_dir);
        return 0;
}

static uint8_t resp[65536 + 2];

static void xmit(struct vpiv *c, const uint8_t *apdu, size_t len, size_t *rlen) {
        if (vpiv_transmit(c, apdu, len, resp, sizeof resp, rlen) != 0 || *rlen < 2)
                abort();
}

/* Mutual authentication with the default 3DES key, as a host does it. */
static void mgmt_auth(struct vpiv *c) {
        static const uint8_t key[24] = { 1, 2, 3, 4, 5, 6, 7, 8, 1, 2, 3, 4, 5, 6, 7, 8, 1, 2, 3, 4, 5, 6, 7, 8 };
        const uint8_t step1[] = { 0x00, 0x87, 0x03, 0x9B, 0x04, 0x7C, 0x02, 0x80, 0x00, 0x00 };
        size_t rlen;
        xmit(c, step1, sizeof step1, &rlen);
        if (rlen != 14 || resp[0] != 0x7C || resp[2] != 0x80 || resp[3] != 8)
                return;
        uint8_t witness[8];
        mbedtls_des3_context d;
        mbedtls_des3_init(&d);
        mbedtls_des3_set3key_dec(&d, key);
        mbedtls_des3_crypt_ecb(&d, resp + 4, witness);
        mbedtls_des3_free(&d);
        uint8_t step2[5 + 22 + 1] = { 0x00, 0x87, 0x03, 0x9B, 22, 0x7C, 20, 0x80, 8 };
        memcpy(step2 + 9, witness, 8);
        step2[17] = 0x81;
        step2[18] = 8;
        memset(step2 + 19, 0x42, 8);
        step2[27] = 0x00;
        xmit(c, step2, sizeof step2, &rlen);
}

/* The next message of the input at *pos: false at the end. */
static bool next_message(const uint8_t *data, size_t size, size_t *pos, const uint8_t **ret, size_t *ret_len) {
        if (size - *pos < 2)
                return false;
        size_t len = ((size_t)data[*pos] << 8) | data[*pos + 1];
        *pos += 2;
        if (len > size - *pos)
                len = size - *pos;
        *ret = data + *pos;
        *ret_len = len;
        *pos += len;
        return true;
}

/* True when some message of the input is a command that changes what the
 * card keeps beyond its PIN, PUK and try counters (GENERATE, PUT DATA): such
 * an input gets a card of its own.  The others run on one card loaded once
 * and rewound after each input (vpiv_rewind): loading a card (its
 * directory, 4 keys, 2 certificates) costs far more than the input. */
static bool changes_card(const uint8_t *data, size_t size) {
        size_t pos = 0, len;
        const uint8_t *m;
        while (next_message(data, size, &pos, &m, &len)) {
                if (len >= 2 && (m[1] == 0x47 || m[1] == 0xDB))
                        return true;
        }
        return false;
}

static struct vpiv *shared_card;

static void free_shared_card(void) {
        vpiv_free(shared_card);
        shared_card = NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        struct vpiv *c;
        char *err = NULL;
        bool own = changes_card(data, size);
        if (!own && shared_card)
                c = shared_card;
        else if (vpiv_new(card_dir, &c, &err) != 0) {
                fprintf(stderr, "fuzz-vpiv: %s\n", err ? err : "?");
                abort();
        } else if (!own) {
                shared_card = c;
                atexit(free_shared_card);
        }
        size_t pos = 0, len;
        const uint8_t *m;
        while (next_message(data, size, &pos, &m, &len)) {
                if (len == 1 && m[0] == 0xA5) {
                        mgmt_auth(c);
                        continue;
                }
                if (len > 5 && m[1] == 0x47 && memchr(m + 5, 0x07, len - 5))
                        continue;
                size_t rlen = 0;
                int r = vpiv_vpcd_message(c, m, len, resp, sizeof resp, &rlen);
                if (r == -EBADMSG && len <= 1)
                        continue;
                if (r != 0 || rlen > sizeof resp)
                        abort();
                if (len >= 4 && rlen < 2)
                        abort();
        }
        if (own)
                vpiv_free(c);
        else
                vpiv_rewind(c);
        free(err);
        return 0;
}
