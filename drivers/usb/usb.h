/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* drivers/usb: CCID readers and USB keys over libusb, with hotplug.
 *
 * Discovery finds every interface of class 0x0B whose CCID class descriptor
 * says APDU exchange (short, or short and extended: ccid_desc_verdict); the
 * others are logged once with the reason and left alone.  One thread owns
 * libusb event handling: hotplug arrivals and departures, and the interrupt
 * endpoint (RDR_to_PC_NotifySlotChange: card in/out of a reader).  When a
 * card is present the thread powers it on, wraps the slot in an
 * apdu_transport and asks the factory for a token, which it hands to the
 * daemon (driver_host.token_added); when the device or the card goes, it
 * calls driver_host.token_removed.  Only slot 0 of multi-slot readers is
 * used.
 *
 * The transport (struct apdu_transport) belongs to the token: its transmit()
 * runs on the daemon's worker threads, one exchange at a time per reader (a
 * lock), with synchronous libusb transfers.  Once the device is unplugged
 * (LIBUSB_ERROR_NO_DEVICE, pending transfers failing, or the departure
 * event) or the card pulled, every transmit returns -ENODEV at once.  The
 * reader's memory lives until both the discovery and the token have let go
 * (a reference count).
 *
 * Debug: NETCA_DEBUG=usb logs each CCID message type and status (never the
 * APDU data: it may carry a PIN). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "drivers/apdu.h"
#include "drivers/driver.h"

struct usb_discovery;

/* Cards become tokens through factory (apdu_token_factory_fn, drivers/apdu.h):
 * -ENOTSUP is logged at notice level and the reader kept for the next card. */
/* Starts discovery: initializes libusb, registers for hotplug, enumerates
 * what is attached, and starts the event thread.  Tokens go to host.  -EIO
 * libusb cannot start; -ENOMEM. */
int usb_discovery_new(struct driver_host *host, apdu_token_factory_fn factory, void *factory_userdata,
                      struct usb_discovery **ret);
/* Stops the thread: no driver_host call happens after it returns.  Tokens
 * already handed over stay valid.  Idempotent, NULL ok. */
void usb_discovery_stop(struct usb_discovery *d);
/* Stops, releases the readers and libusb.  Call after the daemon has freed
 * the tokens (core_free): a token's transport keeps its reader open.
 * NULL ok; returns NULL. */
struct usb_discovery *usb_discovery_free(struct usb_discovery *d);

/* Opens the first supported reader with a card (tests, tools): synchronous,
 * without a thread.  name_match: substring of "<manufacturer> <product>
 * <serial>" or NULL for any.  The transport owns its libusb context; the
 * card is powered on (ATR in *ret_atr if given, 64 bytes).  -ENOENT no such
 * reader, -ENODEV no card. */
int usb_transport_open(const char *name_match, struct apdu_transport **ret, char **ret_name, uint8_t *ret_atr,
                       size_t *ret_atr_len);

/* Counters of a transport from this driver (tests): time extensions seen,
 * XfrBlock-chained commands.  -EINVAL for another transport. */
int usb_transport_stats(struct apdu_transport *t, unsigned *ret_time_ext, unsigned *ret_xfr_chained);
/* GetParameters on the transport's slot (0 T=0, 1 T=1). */
int usb_transport_get_protocol(struct apdu_transport *t, uint8_t *ret_protocol);
/* The extended-APDU exchange level of the reader. */
bool usb_transport_extended(struct apdu_transport *t);
