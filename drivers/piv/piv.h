/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The PIV card application (NIST SP 800-73-4) as a netcad token, over any
 * APDU transport (drivers/apdu.h): USB CCID readers and keys, BLE keys.
 *
 * What a client sees, per key slot present on the card (9A PIV
 * Authentication, 9C Digital Signature, 9D Key Management, 9E Card
 * Authentication, 82-95 retired Key Management keys):
 *   - the certificate (CKO_CERTIFICATE, public);
 *   - its public key (CKO_PUBLIC_KEY, public, derived from the certificate);
 *   - the private key (CKO_PRIVATE_KEY, CKA_PRIVATE true).
 * All three share CKA_ID, the key's number as OpenSC numbers them, so both
 * stacks agree: 9A 01, 9C 02, 9D 03, 9E 04, 82..95 05..18 (one byte).
 * Labels follow OpenSC too ("PIV AUTH key", "Certificate for PIV
 * Authentication", ...).  A slot without a certificate is not listed (PIV
 * offers no other way to learn a key's algorithm), except right after
 * generate_key_pair until the card is removed.  Certificates stored
 * compressed (CertInfo bit 0) are reported absent, with a log line.
 *
 * Capabilities: every key signs; 9C signs and has CKA_ALWAYS_AUTHENTICATE (the
 * card wants the PIN right before each signature: the client logs in with
 * CKU_CONTEXT_SPECIFIC, which sends VERIFY again); 9A, 9D and 82-95 also
 * decrypt (RSA).  Mechanisms: CKM_RSA_PKCS (sign: the driver
 * pads the DigestInfo, EMSA-PKCS1-v1_5; decrypt: unpads), CKM_RSA_X_509,
 * CKM_RSA_PKCS_PSS (EMSA-PSS encoded here), CKM_RSA_PKCS_OAEP (decrypt,
 * decoded here, SHA-1/SHA-256), CKM_ECDSA on P-256 and P-384 (the card's DER
 * signature converted to r||s); key generation RSA-2048, P-256, P-384.
 *
 * PINs, and the mapping of PKCS#11 users onto PIV references:
 *   CKU_USER              the PIV Card Application PIN (reference 80):
 *                         VERIFY; 63Cx -> -EACCES with x tries left,
 *                         6983 -> -EKEYREVOKED.  Logout: VERIFY P1=FF,
 *                         else a card reset.
 *   CKU_CONTEXT_SPECIFIC  VERIFY of the PIN again (9C).
 *   CKU_SO                the PUK (reference 81).  PIV defines no VERIFY
 *                         for the PUK; cards that answer one (as the
 *                         virtual card does) have it checked at login, other
 *                         cards have it checked by the next RESET RETRY
 *                         COUNTER.  The PUK is kept in secure memory while
 *                         the SO is logged in.
 *   C_InitPIN (SO)        RESET RETRY COUNTER (PUK + new PIN): unblocks
 *                         and sets the PIN.
 *   C_SetPIN              CHANGE REFERENCE DATA of the PIN (user or nobody
 *                         logged in) or of the PUK (SO logged in).
 * PINs and PUKs are 6 to 8 bytes (padded with FF to 8 on the wire).
 *
 * Writes (generate_key_pair, which also needs the user logged in as the
 * PKCS#11 client expects; create_object of a certificate = PUT DATA;
 * destroy_object of a certificate) authenticate with the card management
 * key (9B) first, by mutual authentication:
 * 3DES (alg 03) or AES-128/192/256 (08/0A/0C).  The key comes from
 * piv_token_set_mgmt_key(), else from $NETCA_PIV_MGMT_KEY ("3des:HEX",
 * "aes128:HEX", "aes192:HEX", "aes256:HEX"), else the well-known default
 * 3DES key 0102030405060708 x3.  The target slot is chosen by CKA_ID (the
 * numbering above); without one, keygen takes the first slot without a key
 * (9A, 9C, 9D, 9E, then 82-95) and a certificate goes to the slot whose key
 * it certifies.  Key generation deletes the slot's old certificate from the
 * card (it certifies a key that no longer exists).  PIV stores no labels:
 * CKA_LABEL in templates is ignored.  A management key the card refuses
 * gives -EROFS (CKR_TOKEN_WRITE_PROTECTED: the card stays read-only for
 * us), with a log line.
 * Only certificates can be created (other classes: -EDOM) and destroyed
 * (keys: -EROFS); they are always token objects (CKA_TOKEN false: -EINVAL).
 *
 * Public objects are read once, when the token is created (i.e. once per
 * insertion), and served from memory; writes update that copy.  "Device
 * gone" from the transport (-ENODEV) is returned as -ENODEV by every op from
 * then on.  Locking: every op takes the token's lock (the card is
 * single-threaded); get_info answers from a snapshot under its own lock. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "drivers/apdu.h"
#include "drivers/driver.h"

extern const struct driver_ops piv_ops;

/* The management key algorithms (PIV algorithm identifiers). */
enum piv_mgmt_alg {
        PIV_MGMT_3DES = 0x03,
        PIV_MGMT_AES128 = 0x08,
        PIV_MGMT_AES192 = 0x0A,
        PIV_MGMT_AES256 = 0x0C,
};

/* Opens the PIV application on a card: SELECT, serial from the CHUID (GUID,
 * else FASC-N) or the CCC, PIN retry counter, and every certificate.
 * Takes ownership of t (freed on failure too).  kind names the transport
 * ("usb", "ble", "pcsc"; a static string, NULL = "usb"): it is the token's
 * token_desc.kind and the prefix of *slot_key (malloc'd, may be NULL),
 * "<kind>:<serial>", stable across re-insertion of the same card and
 * distinct for the same card in another transport.  reader_name is for the
 * token's model/label only (may be NULL).
 * Errors: -ENODEV, -EIO transport; -ENOTSUP no PIV application on the
 * card; -ENOMEM. */
int piv_token_new(struct apdu_transport *t, const char *kind, const char *reader_name, struct token **ret,
                  char **slot_key);

/* The one binding of PIV to a transport, as the apdu_token_factory_fn
 * every APDU discovery (USB CCID, BLE, TPDU readers) takes: userdata is the
 * transport's kind (a static string, as for piv_token_new), *ret_ops is
 * &piv_ops. */
int piv_token_factory(void *kind, struct apdu_transport *t, const char *reader_name,
                      const struct driver_ops **ret_ops, struct token **ret_token, char **ret_slot_key);

/* Sets the management key used for writes (copied to secure memory).
 * -EINVAL for a key length that does not fit the algorithm. */
int piv_token_set_mgmt_key(struct token *t, enum piv_mgmt_alg alg, const uint8_t *key, size_t len);
