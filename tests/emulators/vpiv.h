/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* vpiv: a virtual PIV card (NIST SP 800-73-4) for the tests.
 *
 * The card is loaded from a directory and answers command APDUs with response
 * APDUs; the transports (vpcd for pcscd+OpenSC, stdio for the umockdev CCID
 * harness) live in vpiv-card.c.  Not thread-safe: one caller at a time, as a
 * real card.
 *
 * Card directory (tests/emulators/make-card.sh writes a complete one):
 *   card.conf      "key = value" lines, '#' comments; every key optional:
 *                    pin = 123456             6-8 characters (sent FF-padded to 8)
 *                    puk = 12345678           6-8 characters
 *                    pin_retries = 3          retry limits (1-15)
 *                    puk_retries = 3
 *                    pin_tries_left = 3       current counters (state, written by vpiv_save)
 *                    puk_tries_left = 3
 *                    mgmt_alg = 3des          3des | aes128 | aes192 | aes256
 *                    mgmt_key = 0102...08     hex, 24/16/24/32 bytes for the algs above
 *                    guid = <32 hex>          CHUID GUID and CCC card identifier (the "serial")
 *                    delay_ms = 0             sleep before answering each APDU (0-10000)
 *   <slot>.key.pem   private key of a slot (PKCS#1, SEC1 or PKCS#8 PEM; RSA-2048,
 *                    P-256 or P-384); slot is 9a 9c 9d 9e or 82..95 (lower-case hex)
 *   <slot>.crt.pem   its certificate, PEM or DER (<slot>.crt.der); the card
 *   <slot>.crt.der   serves it as 53 { 70 cert, 71 00, FE 00 }
 *   obj-<tag>.bin    any data object (tag 5fc1xx, 6 hex digits) as the raw
 *                    contents of its 53 template; wins over <slot>.crt.*.
 *                    vpiv_save writes objects written by PUT DATA this way.
 * The PIN, PUK and management key are kept in the clear: this is a test card.
 *
 * Security rules: 9A, 9D and 82-95 need the PIN verified in this session; 9C
 * needs a successful VERIFY before each GENERAL AUTHENTICATE (PIN always);
 * 9E needs nothing; GENERATE ASYMMETRIC KEY PAIR and PUT DATA need the
 * management key (9B) authenticated (mutual or external authentication).
 * VERIFY accepts P2 = 80 (PIN) and, beyond SP 800-73-4, 81 (PUK: status query
 * with empty data, or a check that grants nothing) so that a driver can read
 * the PUK counter.  The PIV application is selected at power on (as on most
 * tokens); SELECT accepts the AID right-truncated to 5 bytes or more.
 * Response data longer than Ne is returned in 61xx chunks (GET RESPONSE);
 * a command with data and no Le gets its data back in 61xx chunks too. */
#pragma once

#include <stddef.h>
#include <stdint.h>

struct vpiv;

/* Loads a card directory (see above).  0 or -errno; *err a malloc'd message
 * (caller frees) on failure, NULL on success.  *ret untouched on failure. */
int vpiv_new(const char *dir, struct vpiv **ret, char **err);
/* Frees the card (NULL is fine), wiping PINs and keys; does not save. */
void vpiv_free(struct vpiv *c);
/* The ATR (a fixed, plausible PIV ATR); returns its length (copied only if
 * cap is large enough). */
size_t vpiv_atr(struct vpiv *c, uint8_t *out, size_t cap);
/* Power cycle: security state (PIN verified, mgmt auth), chaining and
 * pending responses cleared; the PIV application selected. */
void vpiv_reset(struct vpiv *c);
/* vpiv_reset, and the PIN and PUK and their try counters back to what
 * vpiv_new loaded (what VERIFY, CHANGE REFERENCE DATA and RESET RETRY
 * COUNTER change); for the fuzz target, which reuses one card for the inputs
 * that change nothing else. */
void vpiv_rewind(struct vpiv *c);
/* One command APDU in, the response APDU (data + SW1 SW2) out.  Card errors
 * are status words (0 returned; a malformed APDU gets 6700).  -EINVAL bad
 * arguments; -ENOBUFS when rcap < Ne + 2 (Ne from Le: 0 without Le, 256 for a
 * short Le of 00, 65536 for an extended one of 0000), checked before the
 * command runs, so rcap >= 65538 is always enough; -ENOMEM.  Sleeps
 * delay_ms first when set. */
int vpiv_transmit(struct vpiv *c, const uint8_t *capdu, size_t clen, uint8_t *rapdu, size_t rcap, size_t *rlen);
/* Persist changed state (PINs, counters, generated keys, written objects)
 * back to the directory; files are replaced atomically.  0 or -errno. */
int vpiv_save(struct vpiv *c);

/* Beyond the core API. */
/* Overrides card.conf's delay_ms (per-APDU delay, milliseconds). */
void vpiv_set_delay_ms(struct vpiv *c, unsigned ms);
/* One message of the vpcd protocol (also used on stdio): 1-byte control
 * messages 0x00 power off, 0x01 power on, 0x02 reset (*outlen = 0, nothing
 * to send back), 0x04 get ATR (out = the ATR); longer messages are command
 * APDUs (out = response APDU).  0 or -errno (-EBADMSG: unknown control byte
 * or empty message). */
int vpiv_vpcd_message(struct vpiv *c, const uint8_t *msg, size_t len, uint8_t *out, size_t cap, size_t *outlen);
