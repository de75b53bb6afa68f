/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* CCID (USB Chip/Smart Card Interface Devices, rev 1.1) message layer,
 * independent of libusb so that it can be fuzzed and unit-tested.
 *
 * Three parts:
 *  - the class descriptor (section 5.1): parsing and a verdict on whether
 *    this driver can drive the reader (APDU exchange levels only);
 *  - bulk messages: building PC_to_RDR headers, parsing RDR_to_PC replies
 *    defensively (length, type, slot, bSeq) and mapping bStatus/bError;
 *  - the APDU exchange (struct ccid_slot): XfrBlock with wLevelParameter
 *    chaining for long extended APDUs, ISO 7816-4 command chaining on
 *    short-only readers, 61xx GET RESPONSE and 6Cxx retries, time extension.
 *    It talks to the device through struct ccid_io, so the whole exchange
 *    logic runs against a fuzzer or a test double as well as against libusb.
 *
 * Errors: 0 or a negative errno.  -ENODEV the device (or the card) is gone,
 * -ETIMEDOUT the card or reader did not answer, -EIO anything else the device
 * did wrong (bad length, bSeq mismatch, error status), -EINVAL a malformed
 * command APDU from the caller, -ENOBUFS the response does not fit. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CCID_CLASS     0x0B
#define CCID_DESC_TYPE 0x21
#define CCID_DESC_LEN  54
#define CCID_HDR_LEN   10

/* Message types */
#define CCID_PC_TO_RDR_ICC_POWER_ON       0x62
#define CCID_PC_TO_RDR_ICC_POWER_OFF      0x63
#define CCID_PC_TO_RDR_GET_SLOT_STATUS    0x65
#define CCID_PC_TO_RDR_XFR_BLOCK          0x6F
#define CCID_PC_TO_RDR_GET_PARAMETERS     0x6C
#define CCID_RDR_TO_PC_DATA_BLOCK         0x80
#define CCID_RDR_TO_PC_SLOT_STATUS        0x81
#define CCID_RDR_TO_PC_PARAMETERS         0x82
#define CCID_RDR_TO_PC_NOTIFY_SLOT_CHANGE 0x50
#define CCID_RDR_TO_PC_HARDWARE_ERROR     0x51

/* dwFeatures exchange level (mask 0x00070000) */
#define CCID_FEAT_LEVEL_MASK       0x00070000u
#define CCID_FEAT_LEVEL_CHAR       0x00000000u
#define CCID_FEAT_LEVEL_TPDU       0x00010000u
#define CCID_FEAT_LEVEL_SHORT_APDU 0x00020000u
#define CCID_FEAT_LEVEL_EXT_APDU   0x00040000u

/* Largest message we ever accept from a reader, whatever it declares: an
 * extended APDU response (65536 + 2) plus the header, rounded up. */
#define CCID_MAX_MSG (65536u + 2u + CCID_HDR_LEN + 64u)
/* Largest APDU response the exchange assembles (61xx chains included). */
#define CCID_MAX_RAPDU (65536u + 2u)

struct ccid_desc {
        uint16_t bcd_ccid;
        uint8_t max_slot_index;
        uint8_t voltage_support;
        uint32_t protocols;
        uint32_t max_ifsd;
        uint32_t features;
        uint32_t max_msg_len; /* dwMaxCCIDMessageLength */
        uint8_t class_get_response;
        uint8_t class_envelope;
        uint8_t pin_support;
        uint8_t max_busy_slots;
};

/* Finds and parses the CCID class descriptor in a block of "extra"
 * descriptors (an interface's, or an endpoint's for readers that put it
 * there).  Accepts type 0x21 and the pre-1.0 type 0xFF.  -ENOENT none found,
 * -EBADMSG truncated or malformed. */
int ccid_desc_parse(const uint8_t *extra, size_t len, struct ccid_desc *ret);

enum ccid_level {
        CCID_LEVEL_CHARACTER,
        CCID_LEVEL_TPDU,
        CCID_LEVEL_SHORT_APDU,
        CCID_LEVEL_EXTENDED_APDU,
        CCID_LEVEL_UNKNOWN,
};
enum ccid_level ccid_desc_level(const struct ccid_desc *d);
const char *ccid_level_name(enum ccid_level l);

/* Whether this driver can drive an interface.  interface_protocol is
 * bInterfaceProtocol (0 bulk CCID; 1, 2 ICCD over control transfers),
 * n_endpoints bNumEndpoints.  Returns true when supported; *ret_reason (a
 * static string) says why not, or which level is used. */
bool ccid_desc_verdict(const struct ccid_desc *d, uint8_t interface_protocol, uint8_t n_endpoints,
                       const char **ret_reason);

/* Writes a 10-byte PC_to_RDR header. */
void ccid_header(uint8_t hdr[CCID_HDR_LEN], uint8_t type, uint32_t len, uint8_t slot, uint8_t seq, uint8_t b7,
                 uint16_t w8);

/* A parsed RDR_to_PC bulk message; data points into the parsed buffer. */
struct ccid_reply {
        uint8_t type;
        uint8_t slot;
        uint8_t seq;
        uint8_t status; /* bStatus */
        uint8_t error;  /* bError */
        uint8_t param;  /* bChainParameter / bClockStatus / bProtocolNum */
        const uint8_t *data;
        uint32_t len;
};

/* Parses a complete bulk-IN message: at least a header, dwLength equal to
 * what follows.  -EBADMSG otherwise. */
int ccid_reply_parse(const uint8_t *buf, size_t n, struct ccid_reply *ret);

/* bmICCStatus of bStatus */
#define CCID_ICC_ACTIVE   0
#define CCID_ICC_INACTIVE 1
#define CCID_ICC_ABSENT   2
/* Result of checking a reply against the command it answers. */
#define CCID_REPLY_OK             0
#define CCID_REPLY_TIME_EXTENSION 1
/* Checks a reply: the type expected, our slot and bSeq, bmCommandStatus.
 * Returns CCID_REPLY_OK, CCID_REPLY_TIME_EXTENSION (read again), or
 * -EIO (wrong type/slot/bSeq, error status), -ENODEV (no card in the slot),
 * -ETIMEDOUT (ICC_MUTE), -ENOTSUP (command not supported). */
int ccid_reply_check(const struct ccid_reply *r, uint8_t type, uint8_t slot, uint8_t seq);
/* A short name for a bError value, for logs. */
const char *ccid_error_name(uint8_t error);

/* RDR_to_PC_NotifySlotChange on the interrupt endpoint: *ret_present the
 * card state of slot, *ret_changed its change bit.  -EBADMSG if the message is
 * not a NotifySlotChange or does not cover slot; -ENOMSG for a
 * HardwareError message (logged, ignored). */
int ccid_notify_parse(const uint8_t *buf, size_t n, unsigned slot, bool *ret_present, bool *ret_changed);

/* ------------------------------------------------------------------------ */
/* The APDU exchange over one slot. */

struct ccid_io {
        void *userdata;
        /* Writes one bulk-OUT message (all of it). */
        int (*send)(void *userdata, const uint8_t *buf, size_t len);
        /* Reads one bulk-IN message (a short packet ends it) into buf. */
        int (*recv)(void *userdata, uint8_t *buf, size_t cap, size_t *ret_len);
};

struct ccid_slot {
        struct ccid_io io;
        struct ccid_desc desc;
        uint8_t slot;
        uint8_t seq;           /* next bSeq */
        bool extended;         /* the reader takes extended APDUs */
        uint32_t max_msg;      /* effective dwMaxCCIDMessageLength */
        unsigned max_time_ext; /* bound on consecutive time extensions */
        /* Answer 61xx with GET RESPONSE and 6Cxx with a re-send here.  Off for
         * the apdu_transport (drivers/apdu.h: apdu_transceive() does it for
         * every transport); on for callers that use ccid_transmit alone. */
        bool iso_auto;
        uint8_t *buf; /* one message, CCID_MAX_MSG */
        /* statistics, for tests and debugging */
        unsigned n_time_ext, n_get_response, n_wrong_le, n_xfr_chained, n_cmd_chained;
};

/* Sets up a slot exchange (allocates its buffer).  -ENOMEM. */
int ccid_slot_init(struct ccid_slot *s, const struct ccid_io *io, const struct ccid_desc *desc, uint8_t slot);
void ccid_slot_done(struct ccid_slot *s);

/* PC_to_RDR_IccPowerOn (automatic voltage); the ATR is copied to atr.
 * -ENODEV no card, -ETIMEDOUT mute card. */
int ccid_power_on(struct ccid_slot *s, uint8_t *atr, size_t cap, size_t *ret_len);
int ccid_power_off(struct ccid_slot *s);
/* PC_to_RDR_GetSlotStatus: *ret_icc is bmICCStatus. */
int ccid_slot_status(struct ccid_slot *s, uint8_t *ret_icc);
/* PC_to_RDR_GetParameters: *ret_protocol 0 (T=0) or 1 (T=1); the
 * protocol data structure is copied to params when given.  -ENOTSUP if the
 * reader does not implement it. */
int ccid_get_parameters(struct ccid_slot *s, uint8_t *ret_protocol, uint8_t *params, size_t cap, size_t *ret_len);

/* Sends one command APDU (ISO 7816-4 short or extended) and brings back the
 * response APDU (data + SW1 SW2) into rapdu.  Commands longer than a reader
 * message go over several XfrBlocks (extended level); an extended APDU on a
 * short-only reader is sent with ISO command chaining.  With s->iso_auto,
 * 61xx is answered with GET RESPONSE (the parts joined) and 6Cxx with the
 * command again and the right Le.  -EINVAL malformed capdu, -ENOBUFS response
 * over rcap. */
int ccid_transmit(struct ccid_slot *s, const uint8_t *capdu, size_t clen, uint8_t *rapdu, size_t rcap,
                  size_t *ret_rlen);
