/*
 * gateway: HTTP/1.1 + JSON in front of the services.
 *
 * Wiring only: configuration, the handlers and filters (registered here,
 * bound to the route table by the core), the core (upstreams, redirect
 * cache, access log), one event loop per thread, and signals.  Signals
 * are blocked in every thread (before any is started) and taken here with
 * sigwait; the main thread then asks each loop to drain and waits for
 * them to finish.
 *
 * The layers, from the bottom: lib/ (pure), net/ (loops, connections,
 * HTTP/1.1), core/ (a request's life, filters, upstreams), handler/ (one
 * file per kind of endpoint).  Built with GW_TEST_HANDLERS (the
 * gateway-test binary), it also serves handler/testing.c's /_test/ routes.
 */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "config.h"
#include "log.h"
#include "rlrules.h"
#include "util.h"

#include "handler/handlers.h"
#include "probe.h"

#define DEFAULT_SECRET "dev-secret-change-me"

/* Splits GATEWAY_LISTEN: "host:port", "[v6]:port", ":port" or "port",
 * optionally prefixed by http:// or tcp://. */
static void
parse_listen(const char *s)
{
	const char *p = s, *colon;
	char *end;
	long port;

	if (strncmp(p, "http://", 7) == 0 || strncmp(p, "tcp://", 6) == 0)
		p = strchr(p, '/') + 2;
	gw_net_cfg.listen_host[0] = '\0';
	if (*p == '[') {
		const char *rb = strchr(p, ']');

		if (rb == NULL || rb[1] != ':' ||
		    (size_t) (rb - p - 1) >= sizeof(gw_net_cfg.listen_host))
			fatalx("event=config GATEWAY_LISTEN=%s err=malformed",
			       s);
		memcpy(gw_net_cfg.listen_host, p + 1, (size_t) (rb - p - 1));
		gw_net_cfg.listen_host[rb - p - 1] = '\0';
		colon = rb + 1;
	} else if ((colon = strrchr(p, ':')) != NULL) {
		if ((size_t) (colon - p) >= sizeof(gw_net_cfg.listen_host))
			fatalx("event=config GATEWAY_LISTEN=%s err=malformed",
			       s);
		memcpy(gw_net_cfg.listen_host, p, (size_t) (colon - p));
		gw_net_cfg.listen_host[colon - p] = '\0';
	} else {
		colon = p - 1;
	}
	port = strtol(colon + 1, &end, 10);
	if (*end != '\0' || end == colon + 1 || port < 0 || port > 65535)
		fatalx("event=config GATEWAY_LISTEN=%s err=\"bad port\"", s);
	gw_net_cfg.listen_port = (int) port;
	if (strcmp(gw_net_cfg.listen_host, "*") == 0)
		gw_net_cfg.listen_host[0] = '\0';
}

static const char *
jwt_secret(void)
{
	return (cm_env_secret("AUTH_JWT_SECRET", DEFAULT_SECRET));
}

static void
config_load(void)
{
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	const char *lv = cm_env_str("LOG_LEVEL", "info");
	char err[256];

	parse_listen(cm_env_str("GATEWAY_LISTEN", "0.0.0.0:8080"));
	gw_net_cfg.threads =
	    (int) cm_env_int("GATEWAY_THREADS", ncpu > 0 ? ncpu : 1, 1, 256);
	gw_net_cfg.max_header_bytes = (size_t) cm_env_int(
	    "GATEWAY_MAX_HEADER_BYTES", 16384, 1024, 1 << 20);
	gw_net_cfg.max_headers =
	    (size_t) cm_env_int("GATEWAY_MAX_HEADERS", 100, 1, 10000);
	gw_net_cfg.max_body_bytes = (uint64_t) cm_env_int(
	    "GATEWAY_MAX_BODY_BYTES", 1 << 20, 0, 1L << 30);
	gw_net_cfg.body_budget = (uint64_t) cm_env_int(
	    "GATEWAY_BODY_BUDGET_BYTES", 256L << 20, 1024, 1L << 40);
	gw_net_cfg.idle_timeout_ms =
	    cm_env_int("GATEWAY_IDLE_TIMEOUT_MS", 60000, 100, 86400000);
	gw_net_cfg.write_timeout_ms =
	    cm_env_int("GATEWAY_WRITE_TIMEOUT_MS", 30000, 100, 86400000);
	gw_net_cfg.request_timeout_ms =
	    cm_env_int("GATEWAY_REQUEST_TIMEOUT_MS", 10000, 100, 3600000);
	gw_net_cfg.drain_timeout_ms =
	    cm_env_int("GATEWAY_DRAIN_TIMEOUT_MS", 30000, 0, 3600000);
	gw_net_cfg.max_conns =
	    (size_t) cm_env_int("GATEWAY_MAX_CONNS", 16384, 1, 1 << 20);
	gw_net_cfg.max_conns_per_addr =
	    (size_t) cm_env_int("GATEWAY_MAX_CONNS_PER_ADDR", 1024, 1, 1 << 20);
	gw_net_cfg.exempt = &gw_core_cfg.trust;

	gw_core_cfg.rpc_timeout_ms =
	    cm_env_int("GATEWAY_RPC_TIMEOUT_MS", 3000, 10, 600000);
	gw_core_cfg.access_log = cm_env_bool("GATEWAY_ACCESS_LOG", true) &&
	                         strcasecmp(lv, "warn") != 0 &&
	                         strcasecmp(lv, "warning") != 0 &&
	                         strcasecmp(lv, "error") != 0;
	gw_core_cfg.cache_bytes =
	    (size_t) cm_env_int("GATEWAY_CACHE_BYTES", 64L << 20, 0, 1L << 40);
	gw_core_cfg.cache_ttl_ms =
	    cm_env_int("GATEWAY_CACHE_TTL_MS", 60000, 0, 86400000);
	gw_core_cfg.negative_ttl_ms =
	    cm_env_int("GATEWAY_NEGATIVE_TTL_MS", 2000, 0, 3600000);
	gw_core_cfg.jwt_secret = jwt_secret();
	gw_core_cfg.jwt_secret_len = strlen(gw_core_cfg.jwt_secret);
	gw_core_cfg.metrics_token = cm_env_str("METRICS_TOKEN", "");
	if (gw_trust_parse(&gw_core_cfg.trust,
	                   cm_env_str("TRUSTED_PROXIES", ""), err,
	                   sizeof(err)) != 0)
		fatalx("event=config TRUSTED_PROXIES err=\"%s\"", err);
	gw_core_cfg.redis_url =
	    cm_env_str("REDIS_URL", "redis://127.0.0.1:6379");
}

#ifdef GW_TEST_HANDLERS
static struct gw_route *all; /* the shipped routes and the tests' */
#endif

/* The handlers and filters, then the core with the route table. */
static void
core_start(void)
{
	gw_rpc_register();
	gw_redirect_register();
	gw_health_register();
	gw_metrics_register();
	gw_cache_register();
	gw_ratelimit_register();
#ifdef GW_TEST_HANDLERS
	{
		size_t n = gw_nroutes + gw_testing_nroutes;

		gw_testing_register();
		if ((all = calloc(n, sizeof(*all))) == NULL)
			fatalx("gateway: out of memory");
		/* The test routes first: /{code} would take them. */
		memcpy(all, gw_testing_routes,
		       gw_testing_nroutes * sizeof(*all));
		memcpy(all + gw_testing_nroutes, gw_routes,
		       gw_nroutes * sizeof(*all));
		gw_core_start(all, n);
		log_warnx("event=test_build msg=\"/_test/ routes served: not "
		          "for production\"");
	}
#else
	gw_core_start(gw_routes, gw_nroutes);
#endif
}

static int
gw_serve(void)
{
	int port, sig;

	cm_signals_block();
	config_load();
	core_start();
	port = gw_net_cfg.listen_port;
	if (gw_loops_start(&port) != 0)
		fatalx("event=listen host=%s port=%d err=\"cannot listen\"",
		       gw_net_cfg.listen_host, gw_net_cfg.listen_port);
	log_info("event=listening addr=%s:%d threads=%zu routes=%zu "
	         "access_log=%d",
	         gw_net_cfg.listen_host[0] ? gw_net_cfg.listen_host : "*", port,
	         gw_nloops, gw_router.n, gw_core_cfg.access_log);

	while ((sig = cm_signals_wait()) == SIGHUP)
		log_info("event=signal signal=SIGHUP msg=ignored");
	log_info("event=draining signal=%d", sig);
	gw_loops_stop();
	gw_core_stop_upstreams();
	gw_loops_free();
	gw_core_stop();
#ifdef GW_TEST_HANDLERS
	free(all);
#endif
	log_info("event=stopped");
	return (0);
}

/* `gateway token --user NAME [--ttl S | --no-expiry] [--claim K=V]...` */
static int
gw_token_cmd(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"user", required_argument, NULL, 'u'},
	    {"ttl", required_argument, NULL, 't'},
	    {"claim", required_argument, NULL, 'c'},
	    {"no-expiry", no_argument, NULL, 'n'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	const char *user = NULL, *keys[32], *values[32];
	char *claims[32], *tok, *end, *eq;
	long ttl = 86400;
	bool ttl_set = false, no_expiry = false;
	size_t n = 0, i;
	int ch, rv = 1;

	optind = 1;
	while ((ch = getopt_long(argc, argv, "u:t:c:nh", opts, NULL)) != -1) {
		switch (ch) {
		case 'u':
			user = optarg;
			break;
		case 't':
			ttl = strtol(optarg, &end, 10);
			if (*end != '\0' || end == optarg || ttl < 0) {
				fprintf(stderr, "token: bad --ttl %s\n",
				        optarg);
				goto out;
			}
			ttl_set = true;
			break;
		case 'n':
			no_expiry = true;
			break;
		case 'c':
			if (n == sizeof(keys) / sizeof(keys[0]) ||
			    (eq = strchr(optarg, '=')) == NULL ||
			    eq == optarg) {
				fprintf(stderr, "token: bad --claim %s\n",
				        optarg);
				goto out;
			}
			if ((claims[n] = strdup(optarg)) == NULL)
				goto out;
			claims[n][eq - optarg] = '\0';
			keys[n] = claims[n];
			values[n] = claims[n] + (eq - optarg) + 1;
			n++;
			break;
		case 'h':
			printf("usage: gateway token --user NAME [--ttl S | "
			       "--no-expiry] [--claim KEY=VALUE]...\n"
			       "  prints an HS256 token signed with "
			       "AUTH_JWT_SECRET (1 day unless --ttl); a token\n"
			       "  that never expires takes --no-expiry\n");
			rv = 0;
			goto out;
		default:
			goto out;
		}
	}
	if (no_expiry && ttl_set) {
		fprintf(stderr, "token: --ttl and --no-expiry exclude each "
		                "other\n");
		goto out;
	}
	if (ttl_set && ttl == 0) {
		fprintf(stderr, "token: --ttl 0 would never expire; say "
		                "--no-expiry if that is meant\n");
		goto out;
	}
	if (no_expiry)
		ttl = 0;
	if (optind != argc || user == NULL || user[0] == '\0') {
		fprintf(stderr, "usage: gateway token --user NAME [--ttl S] "
		                "[--claim KEY=VALUE]...\n");
		goto out;
	}
	tok = gw_jwt_sign(user, cm_now_s(), ttl, keys, values, n, jwt_secret(),
	                  strlen(jwt_secret()));
	if (tok == NULL) {
		fprintf(stderr,
		        "token: cannot sign (a user id is 1-64 of "
		        "[A-Za-z0-9._@-]; a claim name is not reserved)\n");
		goto out;
	}
	printf("%s\n", tok);
	free(tok);
	rv = 0;
out:
	for (i = 0; i < n; i++)
		free(claims[i]);
	return (rv);
}

static const cm_cli_command commands[] = {
    {"token",
     "token --user NAME [--ttl S | --no-expiry] [--claim KEY=VALUE]...\n"
     "                           print a signed HS256 token",
     gw_token_cmd},
    {NULL, NULL, NULL},
};

static const cm_cli cli = {
    .name = "gateway",
    .summary = "HTTP/1.1 + JSON gateway in front of the services",
    .env_help =
        "  GATEWAY_LISTEN             host:port to serve (0.0.0.0:8080)\n"
        "  GATEWAY_ADDR               what `health` probes "
        "(http://127.0.0.1:8080)\n"
        "  GATEWAY_THREADS            event loops (number of CPUs)\n"
        "  GATEWAY_MAX_HEADER_BYTES   request line + headers (16384)\n"
        "  GATEWAY_MAX_HEADERS        header lines per request (100)\n"
        "  GATEWAY_BODY_BUDGET_BYTES  buffered request bodies in flight, "
        "all\n"
        "                             requests; over it 503 (268435456)\n"
        "  GATEWAY_MAX_CONNS          open connections (16384)\n"
        "  GATEWAY_MAX_CONNS_PER_ADDR  per client address; trusted "
        "proxies\n"
        "                             have none (1024)\n"
        "  GATEWAY_MAX_BODY_BYTES     request body (1048576)\n"
        "  GATEWAY_IDLE_TIMEOUT_MS    keep-alive idle timeout (60000)\n"
        "  GATEWAY_REQUEST_TIMEOUT_MS time to receive a request (10000)\n"
        "  GATEWAY_WRITE_TIMEOUT_MS   output that makes no progress "
        "(30000)\n"
        "  GATEWAY_RPC_TIMEOUT_MS     upstream deadline (3000)\n"
        "  GATEWAY_RATELIMIT          check every request with the "
        "ratelimiter (1)\n"
        "  GATEWAY_RATELIMIT_TIMEOUT_MS  its deadline; past it the rules'\n"
        "                             failure policy applies (20)\n"
        "  GATEWAY_RATELIMIT_RULES_POLL_MS  how often the ratelimiter's "
        "rules\n"
        "                             are fetched for local matching "
        "(1000)\n"
        "  RATELIMIT_RULES            the rules each loop holds until the "
        "ratelimiter's\n"
        "                             arrive: the file the ratelimiter "
        "reads\n"
        "                             (" CM_RL_RULES_INSTALLED " if "
        "present,\n"
        "                             else the source tree's)\n"
        "  RATELIMITER_ADDR           the ratelimiter "
        "(tcp://127.0.0.1:7002)\n"
        "  GATEWAY_DRAIN_TIMEOUT_MS   graceful shutdown bound (30000)\n"
        "  GATEWAY_ACCESS_LOG         1/0 access log (1)\n"
        "  GATEWAY_CACHE_BYTES        redirect cache size, 0 = off "
        "(67108864)\n"
        "  GATEWAY_CACHE_TTL_MS       cached redirect lifetime (60000)\n"
        "  GATEWAY_NEGATIVE_TTL_MS    cached 404/410 lifetime (2000)\n"
        "  GATEWAY_CLICK_FLUSH_MS     click report interval (1000)\n"
        "  GATEWAY_CLICK_MAX_CODES    distinct codes buffered per thread "
        "(100000)\n"
        "  REDIRECT_STATUS            302 or 301 (302)\n"
        "  SHORTENER_ADDR             shortener RPC address(es) "
        "(tcp://127.0.0.1:7001)\n"
        "  NOTIFIER_ADDR              notifier RPC address(es) "
        "(tcp://127.0.0.1:7004)\n"
        "  REDIS_URL                  the redirect cache's invalidations "
        "(redis://127.0.0.1:6379)\n"
        "  AUTH_JWT_SECRET            HS256 key, at least 32 bytes (or a file\n"
        "                             named by AUTH_JWT_SECRET_FILE); needed\n"
        "                             unless BACKENDS_DEV_MODE=1\n"
        "  METRICS_TOKEN              bearer token for non-loopback "
        "/metrics\n"
        "  TRUSTED_PROXIES            IPs/CIDRs allowed to set "
        "X-Forwarded-For\n"
        "  LOG_LEVEL                  debug, info, warn, error (info)\n",
    .addr_env = "GATEWAY_ADDR",
    .addr_default = "http://127.0.0.1:8080",
    .health = gw_health_probe,
    .commands = commands,
    .serve = gw_serve,
};

int
main(int argc, char **argv)
{
	return (cm_cli_main(&cli, argc, argv));
}
