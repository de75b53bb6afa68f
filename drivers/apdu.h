/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* ISO 7816-4 APDUs over any transport: the interface a transport (USB CCID,
 * BLE GATT, a test harness) implements, the exchange helper every card
 * application uses, and a bounds-checked BER-TLV parser.
 *
 * A transport carries one command APDU to the card and brings back one
 * response APDU; it knows nothing about the card application.  The card
 * application (drivers/piv) calls apdu_transceive(), which adds what
 * ISO 7816-4 leaves to the host: command chaining when the data is longer
 * than the transport carries, GET RESPONSE while the card says 61xx, and a
 * re-send with the corrected Le on 6Cxx.
 *
 * Errors: 0 or a negative errno; -ENODEV "the device is gone" is kept apart
 * from -EIO "the exchange failed" all the way up (CKR_DEVICE_REMOVED vs
 * CKR_DEVICE_ERROR). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct apdu_transport;

struct apdu_transport_ops {
        /* One raw exchange: command APDU (short or extended) in, response
         * APDU (data + SW1 SW2) out.  0 or -errno: -ENODEV device gone,
         * -EIO I/O failure, -ETIMEDOUT.  No GET RESPONSE / 6Cxx handling
         * here: apdu_transceive() does that. */
        int (*transmit)(struct apdu_transport *t, const uint8_t *capdu, size_t clen,
                        uint8_t *rapdu, size_t rcap, size_t *rlen);
        /* Power-cycles the card; the ATR out.  Security state is lost. */
        int (*reset)(struct apdu_transport *t, uint8_t *atr, size_t cap, size_t *atr_len);
        /* Largest command data the transport carries in one APDU (255 for
         * short-only readers, 65535 with extended APDUs). */
        size_t (*max_data)(struct apdu_transport *t);
        void (*free)(struct apdu_transport *t);
};

struct apdu_transport {
        const struct apdu_transport_ops *ops;
};

/* What an APDU discovery (USB CCID, BLE GATT, TPDU readers) calls for a
 * card that was just powered on, to make it a token: the card application's
 * binding (piv_token_factory).  Takes ownership of t (frees it on failure
 * too).  *ret_slot_key (malloc'd) identifies the card across re-insertion
 * ("<kind>:<serial>").  0 or -errno; -ENOTSUP means "not a card we serve"
 * (the discovery keeps the reader for the next card). */
struct token;
struct driver_ops;
typedef int (*apdu_token_factory_fn)(void *userdata, struct apdu_transport *t, const char *reader_name,
                                     const struct driver_ops **ret_ops, struct token **ret_token,
                                     char **ret_slot_key);

/* Frees a transport through its ops; accepts NULL; returns NULL. */
struct apdu_transport *apdu_transport_free(struct apdu_transport *t);

/* Wipes and frees a malloc'd APDU buffer of n bytes (commands and
 * responses may carry PINs and key material); accepts NULL. */
void apdu_buf_free(void *p, size_t n);

/* Le values for apdu_transceive(). */
#define APDU_LE_NONE 0          /* no response data expected: no Le field */
#define APDU_LE_MAX 65536       /* "as much as the card has" (Le 00, or 0000 extended) */

/* Status words. */
#define APDU_SW_OK 0x9000

/* Sends one command and collects its whole response.
 *
 * data/len is the command data (len 0: none).  When len exceeds the
 * transport's max_data (or 255 for a short-only transport), the data goes
 * in several APDUs, all but the last with CLA | 0x10 (command chaining);
 * an intermediate answer other than 9000 ends the exchange with that status.
 * le is the response length wanted (APDU_LE_NONE, 1..APDU_LE_MAX); extended
 * APDUs are used when the transport carries them and len > 255 or
 * le > 256.  While the card answers 61xx, GET RESPONSE (INS C0) fetches the
 * rest; on 6Cxx the command is sent again with Le = xx.  Both loops are
 * bounded.
 *
 * The response data (without SW) goes to out (may be NULL when outcap is 0)
 * and its length to *outlen; the final status word to *sw.  A status other
 * than 9000 is not an error here: the caller interprets *sw.
 *
 * Returns 0, or: -ENOBUFS the response exceeds outcap (the rest of it is
 * drained and dropped; *sw and *outlen, the bytes kept, are set); -EIO malformed response (shorter than 2 bytes, or
 * longer than asked) or a transport failure; -ENODEV, -ETIMEDOUT from the
 * transport; -EINVAL bad arguments.  The command buffers are wiped after
 * use (they may carry a PIN or a key). */
int apdu_transceive(struct apdu_transport *t, uint8_t cla, uint8_t ins, uint8_t p1, uint8_t p2,
                    const uint8_t *data, size_t len, size_t le, uint8_t *out, size_t outcap, size_t *outlen,
                    uint16_t *sw);

/* BER-TLV (ISO 7816-4 / X.690 subset as used by card applications): tags of
 * one to four bytes, definite lengths in short or long form of up to four
 * length bytes.  Indefinite lengths are refused. */
struct apdu_tlv {
        uint32_t tag;            /* the tag bytes, big-endian, e.g. 0x5FC102, 0x7F49 */
        const uint8_t *value;    /* points into the parsed buffer */
        size_t len;
        bool constructed;        /* bit 6 of the first tag byte */
};

/* Parses the TLV at *p (p < end), advances *p past it.  0, -ENODATA at the
 * end (*p == end), -EBADMSG malformed or truncated (value past end).  Zero
 * bytes (0x00 or 0xFF padding between TLVs, ISO 7816-4 5.2.2.1) are skipped. */
int apdu_tlv_next(const uint8_t **p, const uint8_t *end, struct apdu_tlv *ret);
/* Finds the first TLV with this tag at this level of buf.  0, -ENOENT
 * absent, -EBADMSG malformed before it was found. */
int apdu_tlv_find(const uint8_t *buf, size_t len, uint32_t tag, struct apdu_tlv *ret);

/* Writes tag and length header into out (at most 8 bytes); returns its size. */
size_t apdu_tlv_put_header(uint8_t *out, uint32_t tag, size_t len);
