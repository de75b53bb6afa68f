/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* netca-tool: the command line for NETCA token media.
 *
 * Management (token create/delete, PIN status, daemon status) talks to
 * netcad's management ops over its socket; everything on objects (list,
 * certificates, keys, import, CSR, PIN change) goes through the PKCS#11
 * module, exactly as other applications see the tokens. */
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "common/log.h"
#include "common/secmem.h"

struct cli_opts arg = { .max_tries = -1, .cache_on = -1, .always_auth = -1 };

void cli_error(const char *fmt, ...) {
        va_list ap;
        fputs("netca-tool: ", stderr);
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fputc('\n', stderr);
}

static void help(FILE *f) {
        fputs("Usage: netca-tool [OPTIONS] COMMAND ...\n"
              "\n"
              "Media and daemon:\n"
              "  list                               tokens and their certificates and keys\n"
              "  token create-soft --label L [--pin P --so-pin S] [--max-tries N]\n"
              "  token delete [--token T] [--yes]   delete a soft token file\n"
              "  daemon status                      netcad version, uptime, clients\n"
              "PIN cache (密码缓存):\n"
              "  pin-cache status                   policy, and each cached PIN's token and expiry\n"
              "  pin-cache set [--on|--off] [--ttl 30m] [--max 8h] [--scope process|session]\n"
              "                [--always-authenticate yes|no]\n"
              "  pin-cache clear [--token T]        forget the cached PINs (of one token)\n"
              "  pinentry status                    how PINs are asked for tokens that collect them\n"
              "  pinentry set [--program PATH] [--timeout SECONDS] [--protected-path KINDS|none]\n"
              "                                     KINDS: soft,usb,ble,phone (default: phone)\n"
              "Usage records (使用记录):\n"
              "  log show [--since WHEN] [--until WHEN] [--token T] [--failed]\n"
              "                                     logins, signatures, PIN changes...; failures in red\n"
              "  log export FILE [filters]          records and diagnostic log as a .tar.gz for support\n"
              "  log clear [--yes]                  delete every record\n"
              "  log enable|disable                 the daemon's diagnostic log\n"
              "  log set --max-records N            keep the newest N records (default 100000)\n"
              "  usb dump                           USB CCID readers' descriptors (for bug reports)\n"
              "Browsers:\n"
              "  browser register [--firefox] [--chromium] [--module PATH]\n"
              "                                     add the module to Firefox profiles / Chromium's NSS db\n"
              "  browser unregister [--firefox] [--chromium]\n"
              "  browser status [--firefox] [--chromium]\n"
              "Certificates and keys:\n"
              "  cert show [--cert C]               subject, issuer, validity, key, fingerprints\n"
              "  cert export [--cert C] --pem|--der [-o FILE]\n"
              "  cert delete [--cert C] [--with-key]\n"
              "  import FILE [--key KEYFILE] [--password P|--password-file F] [--label L] [--id HEX]\n"
              "  key gen --type ec-p256|ec-p384|rsa2048|rsa3072 [--label L] [--id HEX]\n"
              "  csr [--cert C|--id HEX|--label L] [--subject DN] [-o FILE]\n"
              "PINs:\n"
              "  pin status                         tries left, locked\n"
              "  pin change [--so]                  change the user (or SO) PIN\n"
              "  pin unblock                        set a new user PIN with the SO PIN\n"
              "  pin unblock --puk PUK|--puk-file F PIV keys: set a new PIN with the PUK\n"
              "\n"
              "Options:\n"
              "  --token LABEL|SERIAL|SLOT   the token to use (default: the only one)\n"
              "  --json                      machine-readable output\n"
              "  --pin PIN, --pin-file FILE  the user PIN (default: asked on the terminal)\n"
              "  --so-pin PIN, --so-pin-file FILE\n"
              "  --new-pin PIN, --new-pin-file FILE\n"
              "  --module PATH               PKCS#11 module (default: netca-pkcs11.so)\n"
              "  --socket PATH               netcad's socket\n"
              "  -h, --help, --version\n"
              "\n"
              "Exit codes: 0 ok, 1 usage, 2 daemon unreachable, 3 PIN wrong or locked,\n"
              "4 not found, 5 other error.  See netca-tool(1).\n",
              f);
}

enum {
        OPT_TOKEN = 256,
        OPT_JSON,
        OPT_PIN,
        OPT_SO_PIN,
        OPT_NEW_PIN,
        OPT_PIN_FILE,
        OPT_SO_PIN_FILE,
        OPT_NEW_PIN_FILE,
        OPT_PUK,
        OPT_PUK_FILE,
        OPT_LABEL,
        OPT_ID,
        OPT_TYPE,
        OPT_MAX_TRIES,
        OPT_PEM,
        OPT_DER,
        OPT_PASSWORD,
        OPT_PASSWORD_FILE,
        OPT_KEY,
        OPT_SUBJECT,
        OPT_SO,
        OPT_YES,
        OPT_WITH_KEY,
        OPT_MODULE,
        OPT_SOCKET,
        OPT_CERT,
        OPT_TTL,
        OPT_MAX,
        OPT_SCOPE,
        OPT_ON,
        OPT_OFF,
        OPT_ALWAYS_AUTH,
        OPT_SINCE,
        OPT_UNTIL,
        OPT_FAILED,
        OPT_PROGRAM,
        OPT_MAX_RECORDS,
        OPT_TIMEOUT,
        OPT_PROTECTED_PATH,
        OPT_FIREFOX,
        OPT_CHROMIUM,
        OPT_VERSION,
};

static const struct option options[] = {
        { "help", no_argument, NULL, 'h' },
        { "version", no_argument, NULL, OPT_VERSION },
        { "token", required_argument, NULL, OPT_TOKEN },
        { "json", no_argument, NULL, OPT_JSON },
        { "pin", required_argument, NULL, OPT_PIN },
        { "so-pin", required_argument, NULL, OPT_SO_PIN },
        { "new-pin", required_argument, NULL, OPT_NEW_PIN },
        { "pin-file", required_argument, NULL, OPT_PIN_FILE },
        { "so-pin-file", required_argument, NULL, OPT_SO_PIN_FILE },
        { "new-pin-file", required_argument, NULL, OPT_NEW_PIN_FILE },
        { "puk", required_argument, NULL, OPT_PUK },
        { "puk-file", required_argument, NULL, OPT_PUK_FILE },
        { "label", required_argument, NULL, OPT_LABEL },
        { "id", required_argument, NULL, OPT_ID },
        { "type", required_argument, NULL, OPT_TYPE },
        { "max-tries", required_argument, NULL, OPT_MAX_TRIES },
        { "pem", no_argument, NULL, OPT_PEM },
        { "der", no_argument, NULL, OPT_DER },
        { "output", required_argument, NULL, 'o' },
        { "password", required_argument, NULL, OPT_PASSWORD },
        { "password-file", required_argument, NULL, OPT_PASSWORD_FILE },
        { "key", required_argument, NULL, OPT_KEY },
        { "subject", required_argument, NULL, OPT_SUBJECT },
        { "so", no_argument, NULL, OPT_SO },
        { "yes", no_argument, NULL, OPT_YES },
        { "with-key", no_argument, NULL, OPT_WITH_KEY },
        { "module", required_argument, NULL, OPT_MODULE },
        { "socket", required_argument, NULL, OPT_SOCKET },
        { "cert", required_argument, NULL, OPT_CERT },
        { "ttl", required_argument, NULL, OPT_TTL },
        { "max", required_argument, NULL, OPT_MAX },
        { "scope", required_argument, NULL, OPT_SCOPE },
        { "on", no_argument, NULL, OPT_ON },
        { "off", no_argument, NULL, OPT_OFF },
        { "always-authenticate", required_argument, NULL, OPT_ALWAYS_AUTH },
        { "since", required_argument, NULL, OPT_SINCE },
        { "until", required_argument, NULL, OPT_UNTIL },
        { "failed", no_argument, NULL, OPT_FAILED },
        { "program", required_argument, NULL, OPT_PROGRAM },
        { "max-records", required_argument, NULL, OPT_MAX_RECORDS },
        { "timeout", required_argument, NULL, OPT_TIMEOUT },
        { "protected-path", required_argument, NULL, OPT_PROTECTED_PATH },
        { "firefox", no_argument, NULL, OPT_FIREFOX },
        { "chromium", no_argument, NULL, OPT_CHROMIUM },
        {}
};

/* Options holding secrets are copied to secure memory and wiped from argv
 * (so that they do not linger in /proc/self/cmdline longer than needed). */
static const char *take_secret(char *optval) {
        char *copy = secure_strndup(optval, strlen(optval));
        if (!copy) {
                cli_error("out of memory");
                exit(CLI_EXIT_OTHER);
        }
        secure_wipe(optval, strlen(optval));
        return copy;
}

static bool use_puk; /* --puk, --puk-file */
static bool opt_firefox, opt_chromium; /* browser ... --firefox --chromium */

/* An option's whole number from min to max; else error printed, -EINVAL. */
static int parse_number(const char *s, long min, long max, const char *error, long *ret) {
        char *end = NULL;
        errno = 0;
        long v = strtol(s, &end, 10);
        if (errno || !end || *end || end == s || v < min || v > max) {
                cli_error("%s", error);
                return -EINVAL;
        }
        *ret = v;
        return 0;
}

static int parse_argv(int argc, char *argv[]) {
        int c;

        while ((c = getopt_long(argc, argv, "ho:", options, NULL)) >= 0) {
                switch (c) {
                case 'h':
                        help(stdout);
                        exit(CLI_EXIT_OK);
                case OPT_VERSION:
                        printf("netca-tool %s\n", NETCA_VERSION);
                        exit(CLI_EXIT_OK);
                case OPT_TOKEN: arg.token = optarg; break;
                case OPT_JSON: arg.json = true; break;
                case OPT_PIN: arg.pin = take_secret(optarg); break;
                case OPT_SO_PIN: arg.so_pin = take_secret(optarg); break;
                case OPT_NEW_PIN: arg.new_pin = take_secret(optarg); break;
                case OPT_PASSWORD: arg.password = take_secret(optarg); break;
                case OPT_PIN_FILE: arg.pin_file = optarg; break;
                case OPT_SO_PIN_FILE: arg.so_pin_file = optarg; break;
                case OPT_NEW_PIN_FILE: arg.new_pin_file = optarg; break;
                /* The PUK is the SO PIN of a PIV key; pin unblock then speaks PIV. */
                case OPT_PUK: arg.so_pin = take_secret(optarg); use_puk = true; break;
                case OPT_PUK_FILE: arg.so_pin_file = optarg; use_puk = true; break;
                case OPT_PASSWORD_FILE: arg.password_file = optarg; break;
                case OPT_LABEL: arg.label = optarg; break;
                case OPT_ID: arg.id_hex = optarg; break;
                case OPT_TYPE: arg.type = optarg; break;
                case OPT_MAX_TRIES:
                        if (parse_number(optarg, 1, 100, "--max-tries must be a number from 1 to 100", &arg.max_tries) < 0)
                                return -EINVAL;
                        break;
                case OPT_PEM: arg.pem = true; break;
                case OPT_DER: arg.der = true; break;
                case 'o': arg.output = optarg; break;
                case OPT_KEY: arg.key_file = optarg; break;
                case OPT_SUBJECT: arg.subject = optarg; break;
                case OPT_SO: arg.so = true; break;
                case OPT_YES: arg.yes = true; break;
                case OPT_WITH_KEY: arg.with_key = true; break;
                case OPT_MODULE: arg.module = optarg; break;
                case OPT_SOCKET: arg.socket = optarg; break;
                case OPT_CERT: arg.cert = optarg; break;
                case OPT_TTL: arg.ttl = optarg; break;
                case OPT_SINCE: arg.since = optarg; break;
                case OPT_UNTIL: arg.until = optarg; break;
                case OPT_FAILED: arg.failed = true; break;
                case OPT_PROGRAM: arg.program = optarg; break;
                case OPT_MAX_RECORDS:
                        if (parse_number(optarg, 100, 10000000, "--max-records must be a number from 100 to 10000000", &arg.max_records) < 0)
                                return -EINVAL;
                        break;
                case OPT_PROTECTED_PATH: arg.protected_kinds = optarg; break;
                case OPT_FIREFOX: opt_firefox = true; break;
                case OPT_CHROMIUM: opt_chromium = true; break;
                case OPT_TIMEOUT:
                        if (parse_number(optarg, 1, 3600, "--timeout must be a number of seconds from 1 to 3600", &arg.timeout) < 0)
                                return -EINVAL;
                        break;
                case OPT_MAX: arg.max = optarg; break;
                case OPT_SCOPE: arg.scope = optarg; break;
                case OPT_ON: arg.cache_on = 1; break;
                case OPT_OFF: arg.cache_on = 0; break;
                case OPT_ALWAYS_AUTH:
                        if (strcmp(optarg, "yes") == 0)
                                arg.always_auth = 1;
                        else if (strcmp(optarg, "no") == 0)
                                arg.always_auth = 0;
                        else {
                                cli_error("--always-authenticate takes yes or no");
                                return -EINVAL;
                        }
                        break;
                default:
                        return -EINVAL;
                }
        }
        return 0;
}

static int usage_error(const char *what) {
        cli_error("%s (see netca-tool --help)", what);
        return CLI_EXIT_USAGE;
}

static int run(int argc, char *argv[]) {
        const char *cmd, *sub;

        if (optind >= argc)
                return usage_error("no command given");
        cmd = argv[optind];
        sub = optind + 1 < argc ? argv[optind + 1] : NULL;

        if (strcmp(cmd, "list") == 0) {
                if (sub)
                        return usage_error("list takes no arguments");
                return cmd_list();
        }
        if (strcmp(cmd, "import") == 0) {
                if (!sub)
                        return usage_error("import needs a FILE");
                if (optind + 2 < argc)
                        return usage_error("import takes one FILE");
                return cmd_import(sub);
        }
        if (strcmp(cmd, "csr") == 0) {
                if (sub)
                        return usage_error("csr takes no arguments");
                return cmd_csr();
        }
        if (strcmp(cmd, "log") == 0 && sub && strcmp(sub, "export") == 0) {
                if (optind + 3 != argc)
                        return usage_error("log export needs one FILE");
                return cmd_log_export(argv[optind + 2]);
        }
        if (sub && optind + 2 < argc)
                return usage_error("too many arguments");
        if (strcmp(cmd, "token") == 0 && sub) {
                if (strcmp(sub, "create-soft") == 0)
                        return cmd_token_create_soft();
                if (strcmp(sub, "delete") == 0)
                        return cmd_token_delete();
                if (strcmp(sub, "list") == 0)
                        return cmd_list();
        } else if (strcmp(cmd, "cert") == 0 && sub) {
                if (strcmp(sub, "show") == 0)
                        return cmd_cert_show();
                if (strcmp(sub, "export") == 0)
                        return cmd_cert_export();
                if (strcmp(sub, "delete") == 0)
                        return cmd_cert_delete();
        } else if (strcmp(cmd, "key") == 0 && sub) {
                if (strcmp(sub, "gen") == 0)
                        return cmd_key_gen();
        } else if (strcmp(cmd, "pin") == 0 && sub) {
                if (strcmp(sub, "status") == 0)
                        return cmd_pin_status();
                if (strcmp(sub, "change") == 0)
                        return cmd_pin_change();
                if (strcmp(sub, "unblock") == 0)
                        return use_puk ? cmd_pin_unblock_puk() : cmd_pin_unblock();
        } else if (strcmp(cmd, "log") == 0 && sub) {
                if (strcmp(sub, "show") == 0)
                        return cmd_log_show();
                if (strcmp(sub, "clear") == 0)
                        return cmd_log_clear();
                if (strcmp(sub, "enable") == 0)
                        return cmd_log_settings(1);
                if (strcmp(sub, "disable") == 0)
                        return cmd_log_settings(0);
                if (strcmp(sub, "set") == 0)
                        return cmd_log_settings(-1);
        } else if (strcmp(cmd, "pinentry") == 0 && sub) {
                if (strcmp(sub, "status") == 0)
                        return cmd_pinentry(false);
                if (strcmp(sub, "set") == 0)
                        return cmd_pinentry(true);
        } else if (strcmp(cmd, "pin-cache") == 0 && sub) {
                if (strcmp(sub, "set") == 0)
                        return cmd_pin_cache_set();
                if (strcmp(sub, "status") == 0)
                        return cmd_pin_cache_status();
                if (strcmp(sub, "clear") == 0)
                        return cmd_pin_cache_clear();
        } else if (strcmp(cmd, "daemon") == 0 && sub) {
                if (strcmp(sub, "status") == 0)
                        return cmd_daemon_status();
        } else if (strcmp(cmd, "browser") == 0 && sub) {
                if (strcmp(sub, "status") == 0)
                        return cmd_browser(0, opt_firefox, opt_chromium);
                if (strcmp(sub, "register") == 0)
                        return cmd_browser(1, opt_firefox, opt_chromium);
                if (strcmp(sub, "unregister") == 0)
                        return cmd_browser(2, opt_firefox, opt_chromium);
        } else if (strcmp(cmd, "usb") == 0 && sub) {
                if (strcmp(sub, "dump") == 0)
                        return cmd_usb_dump();
        }
        cli_error("unknown command: %s%s%s", cmd, sub ? " " : "", sub ? sub : "");
        return usage_error("try one of: list, token, cert, import, key, csr, pin, pin-cache, pinentry, log, daemon, usb, browser");
}

int main(int argc, char *argv[]) {
        int r;

        log_setup("netca-tool");
        (void)secure_harden_process();
        if (parse_argv(argc, argv) < 0)
                return CLI_EXIT_USAGE;
        r = run(argc, argv);
        p11_unload();
        secure_free((void *)arg.pin);
        secure_free((void *)arg.so_pin);
        secure_free((void *)arg.new_pin);
        secure_free((void *)arg.password);
        return r;
}
