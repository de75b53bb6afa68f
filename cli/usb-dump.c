/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* netca-tool usb dump: the device and CCID class descriptors of every
 * attached CCID interface, and the driver's verdict on it, for bug reports.
 * Reads descriptors through libusb directly (no daemon needed; string
 * descriptors need the device to be openable, else they are left out). */
#include <errno.h>
#include <libusb.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "drivers/usb/ccid.h"

static void get_string(libusb_device_handle *h, uint8_t idx, char *out, size_t cap) {
        out[0] = '\0';
        if (!h || !idx)
                return;
        unsigned char buf[128];
        int n = libusb_get_string_descriptor_ascii(h, idx, buf, sizeof buf);
        size_t k = 0;
        for (int i = 0; i < n && k + 1 < cap; i++)
                out[k++] = buf[i] >= 0x20 && buf[i] < 0x7F ? (char)buf[i] : '?';
        out[k] = '\0';
}

static void hex(char *out, const uint8_t *p, size_t n) {
        for (size_t i = 0; i < n; i++)
                sprintf(out + 3 * i, "%02X%s", p[i], i + 1 < n ? " " : "");
        if (!n)
                out[0] = '\0';
}

static const char *protocols(uint32_t p) {
        switch (p & 3) {
        case 1: return "T=0";
        case 2: return "T=1";
        case 3: return "T=0, T=1";
        default: return "none";
        }
}

/* One CCID interface: printed, or added to the JSON array. */
static void dump_interface(libusb_device *dev, const struct libusb_device_descriptor *dd,
                           const struct libusb_interface_descriptor *id, libusb_device_handle *h, const char *open_err,
                           cJSON *arr) {
        char manu[128], prod[128], serial[128];
        get_string(h, dd->iManufacturer, manu, sizeof manu);
        get_string(h, dd->iProduct, prod, sizeof prod);
        get_string(h, dd->iSerialNumber, serial, sizeof serial);
        uint8_t out = 0, in = 0, intr = 0;
        const uint8_t *raw = NULL;
        size_t raw_len = 0;
        struct ccid_desc d;
        int pr = ccid_desc_parse(id->extra, (size_t)id->extra_length, &d);
        if (pr == 0)
                raw = id->extra, raw_len = (size_t)id->extra_length;
        for (int k = 0; k < id->bNumEndpoints; k++) {
                const struct libusb_endpoint_descriptor *ep = &id->endpoint[k];
                int type = ep->bmAttributes & LIBUSB_TRANSFER_TYPE_MASK;
                if (type == LIBUSB_TRANSFER_TYPE_BULK && !(ep->bEndpointAddress & LIBUSB_ENDPOINT_IN))
                        out = ep->bEndpointAddress;
                else if (type == LIBUSB_TRANSFER_TYPE_BULK)
                        in = ep->bEndpointAddress;
                else if (type == LIBUSB_TRANSFER_TYPE_INTERRUPT)
                        intr = ep->bEndpointAddress;
                if (pr < 0 && ccid_desc_parse(ep->extra, (size_t)ep->extra_length, &d) == 0) {
                        pr = 0;
                        raw = ep->extra, raw_len = (size_t)ep->extra_length;
                }
        }
        const char *why = "no CCID class descriptor";
        bool ok = pr == 0 &&
                  ccid_desc_verdict(&d, id->bInterfaceProtocol, (uint8_t)(out && in ? id->bNumEndpoints : 0), &why);
        char rawhex[3 * 256 + 1];
        hex(rawhex, raw, raw_len > 256 ? 256 : raw_len);

        if (arr) {
                cJSON *o = cJSON_CreateObject();
                cJSON_AddNumberToObject(o, "bus", libusb_get_bus_number(dev));
                cJSON_AddNumberToObject(o, "address", libusb_get_device_address(dev));
                char v[8];
                snprintf(v, sizeof v, "%04x", dd->idVendor);
                cJSON_AddStringToObject(o, "idVendor", v);
                snprintf(v, sizeof v, "%04x", dd->idProduct);
                cJSON_AddStringToObject(o, "idProduct", v);
                snprintf(v, sizeof v, "%x.%02x", dd->bcdDevice >> 8, dd->bcdDevice & 0xFF);
                cJSON_AddStringToObject(o, "bcdDevice", v);
                cJSON_AddStringToObject(o, "manufacturer", manu);
                cJSON_AddStringToObject(o, "product", prod);
                cJSON_AddStringToObject(o, "serial", serial);
                if (open_err)
                        cJSON_AddStringToObject(o, "open_error", open_err);
                cJSON_AddNumberToObject(o, "bInterfaceNumber", id->bInterfaceNumber);
                cJSON_AddNumberToObject(o, "bInterfaceProtocol", id->bInterfaceProtocol);
                cJSON_AddNumberToObject(o, "bulk_out", out);
                cJSON_AddNumberToObject(o, "bulk_in", in);
                cJSON_AddNumberToObject(o, "interrupt_in", intr);
                if (pr == 0) {
                        cJSON *c = cJSON_AddObjectToObject(o, "ccid");
                        cJSON_AddStringToObject(c, "raw", rawhex);
                        snprintf(v, sizeof v, "%x.%02x", d.bcd_ccid >> 8, d.bcd_ccid & 0xFF);
                        cJSON_AddStringToObject(c, "bcdCCID", v);
                        cJSON_AddNumberToObject(c, "bMaxSlotIndex", d.max_slot_index);
                        cJSON_AddNumberToObject(c, "bVoltageSupport", d.voltage_support);
                        cJSON_AddNumberToObject(c, "dwProtocols", d.protocols);
                        cJSON_AddNumberToObject(c, "dwMaxIFSD", d.max_ifsd);
                        cJSON_AddNumberToObject(c, "dwFeatures", d.features);
                        cJSON_AddStringToObject(c, "exchange_level", ccid_level_name(ccid_desc_level(&d)));
                        cJSON_AddNumberToObject(c, "dwMaxCCIDMessageLength", d.max_msg_len);
                        cJSON_AddNumberToObject(c, "bClassGetResponse", d.class_get_response);
                        cJSON_AddNumberToObject(c, "bClassEnvelope", d.class_envelope);
                        cJSON_AddNumberToObject(c, "bPINSupport", d.pin_support);
                        cJSON_AddNumberToObject(c, "bMaxCCIDBusySlots", d.max_busy_slots);
                }
                cJSON_AddBoolToObject(o, "supported", ok);
                cJSON_AddStringToObject(o, "verdict", why);
                cJSON_AddItemToArray(arr, o);
                return;
        }
        printf("Reader: bus %03u device %03u\n", libusb_get_bus_number(dev), libusb_get_device_address(dev));
        printf(" idVendor: 0x%04X\n idProduct: 0x%04X\n bcdDevice: %x.%02x\n", dd->idVendor, dd->idProduct,
               dd->bcdDevice >> 8, dd->bcdDevice & 0xFF);
        if (open_err)
                printf(" (strings unavailable: %s)\n", open_err);
        else
                printf(" iManufacturer: %s\n iProduct: %s\n iSerialNumber: %s\n", manu, prod, serial);
        printf(" bInterfaceNumber: %u\n bInterfaceClass: 0x%02X\n bInterfaceProtocol: %u\n", id->bInterfaceNumber,
               id->bInterfaceClass, id->bInterfaceProtocol);
        printf(" endpoints: bulk-OUT 0x%02X, bulk-IN 0x%02X, interrupt-IN 0x%02X\n", out, in, intr);
        if (pr == 0) {
                printf(" CCID class descriptor: %s\n", rawhex);
                printf("  bcdCCID: %x.%02x\n", d.bcd_ccid >> 8, d.bcd_ccid & 0xFF);
                printf("  bMaxSlotIndex: %u\n", d.max_slot_index);
                printf("  bVoltageSupport: 0x%02X\n", d.voltage_support);
                printf("  dwProtocols: 0x%08X (%s)\n", d.protocols, protocols(d.protocols));
                printf("  dwMaxIFSD: %u\n", d.max_ifsd);
                printf("  dwFeatures: 0x%08X (%s level)\n", d.features, ccid_level_name(ccid_desc_level(&d)));
                printf("  dwMaxCCIDMessageLength: %u\n", d.max_msg_len);
                printf("  bClassGetResponse: 0x%02X\n  bClassEnvelope: 0x%02X\n", d.class_get_response,
                       d.class_envelope);
                printf("  bPINSupport: 0x%02X\n  bMaxCCIDBusySlots: %u\n", d.pin_support, d.max_busy_slots);
        }
        printf(" verdict: %s\n\n", why);
}

int cmd_usb_dump(void) {
        libusb_context *ctx = NULL;
        int e = libusb_init(&ctx);
        if (e) {
                cli_error("cannot start libusb: %s", libusb_error_name(e));
                return CLI_EXIT_OTHER;
        }
        libusb_device **list = NULL;
        ssize_t n = libusb_get_device_list(ctx, &list);
        if (n < 0) {
                cli_error("cannot list USB devices: %s", libusb_error_name((int)n));
                libusb_exit(ctx);
                return CLI_EXIT_OTHER;
        }
        cJSON *root = arg.json ? cJSON_CreateObject() : NULL;
        cJSON *arr = root ? cJSON_AddArrayToObject(root, "readers") : NULL;
        unsigned found = 0;
        for (ssize_t i = 0; i < n; i++) {
                struct libusb_device_descriptor dd;
                struct libusb_config_descriptor *cfg = NULL;
                if (libusb_get_device_descriptor(list[i], &dd) || libusb_get_active_config_descriptor(list[i], &cfg))
                        continue;
                libusb_device_handle *h = NULL;
                const char *open_err = NULL;
                for (int k = 0; k < cfg->bNumInterfaces; k++) {
                        if (cfg->interface[k].num_altsetting < 1)
                                continue;
                        const struct libusb_interface_descriptor *id = &cfg->interface[k].altsetting[0];
                        if (id->bInterfaceClass != CCID_CLASS)
                                continue;
                        if (!h && !open_err && (e = libusb_open(list[i], &h)))
                                open_err = libusb_error_name(e);
                        dump_interface(list[i], &dd, id, h, open_err, arr);
                        found++;
                }
                if (h)
                        libusb_close(h);
                libusb_free_config_descriptor(cfg);
        }
        libusb_free_device_list(list, 1);
        libusb_exit(ctx);
        if (root) {
                print_json(root);
                cJSON_Delete(root);
        } else if (!found)
                printf("No CCID reader or USB key attached.\n");
        return CLI_EXIT_OK;
}
