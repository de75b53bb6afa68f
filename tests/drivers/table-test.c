/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The driver table of netcad-test (tests and bench/run.sh only): the
 * product's, with the soft driver behind the test-only delay driver
 * (delay/delay.c), which slows down the soft tokens NETCA_SOFT_DELAY names
 * and passes every other token through untouched. */
#include "drivers/table.h"

#include "drivers/usb/usb-driver.h"

extern const struct driver soft_delay_driver;

const struct driver *const netcad_drivers[] = {
        &soft_delay_driver,
        &usb_driver,
        NULL,
};
