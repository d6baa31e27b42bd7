/*
 * gateway: HTTP/1.1 + JSON in front of the services.
 *
 * Wiring only: configuration, the route table, upstream clients, the
 * redirect cache (a cache engine, rcache.c), one event loop per thread,
 * and signals.  Signals are blocked in every thread (before any is
 * started) and taken here with sigwait; the main thread then asks each
 * loop to drain and waits for them to finish.
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
#include "util.h"

#include "gateway.h"

#define DEFAULT_SECRET "dev-secret-change-me"

struct gw_config gw_cfg;
struct gw_router gw_router;

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
	gw_cfg.listen_host[0] = '\0';
	if (*p == '[') {
		const char *rb = strchr(p, ']');

		if (rb == NULL || rb[1] != ':' ||
		    (size_t) (rb - p - 1) >= sizeof(gw_cfg.listen_host))
			fatalx("event=config GATEWAY_LISTEN=%s err=malformed",
			       s);
		memcpy(gw_cfg.listen_host, p + 1, (size_t) (rb - p - 1));
		gw_cfg.listen_host[rb - p - 1] = '\0';
		colon = rb + 1;
	} else if ((colon = strrchr(p, ':')) != NULL) {
		if ((size_t) (colon - p) >= sizeof(gw_cfg.listen_host))
			fatalx("event=config GATEWAY_LISTEN=%s err=malformed",
			       s);
		memcpy(gw_cfg.listen_host, p, (size_t) (colon - p));
		gw_cfg.listen_host[colon - p] = '\0';
	} else {
		colon = p - 1;
	}
	port = strtol(colon + 1, &end, 10);
	if (*end != '\0' || end == colon + 1 || port < 0 || port > 65535)
		fatalx("event=config GATEWAY_LISTEN=%s err=\"bad port\"", s);
	gw_cfg.listen_port = (int) port;
	if (strcmp(gw_cfg.listen_host, "*") == 0)
		gw_cfg.listen_host[0] = '\0';
}

static const char *
jwt_secret(void)
{
	return (cm_env_str("AUTH_JWT_SECRET", DEFAULT_SECRET));
}

static void
config_load(void)
{
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	const char *lv = cm_env_str("LOG_LEVEL", "info");
	char err[256];

	parse_listen(cm_env_str("GATEWAY_LISTEN", "0.0.0.0:8080"));
	gw_cfg.threads =
	    (int) cm_env_int("GATEWAY_THREADS", ncpu > 0 ? ncpu : 1, 1, 256);
	gw_cfg.max_header_bytes = (size_t) cm_env_int(
	    "GATEWAY_MAX_HEADER_BYTES", 16384, 1024, 1 << 20);
	gw_cfg.max_body_bytes =
	    (size_t) cm_env_int("GATEWAY_MAX_BODY_BYTES", 1 << 20, 0, 1L << 30);
	gw_cfg.idle_timeout_ms =
	    cm_env_int("GATEWAY_IDLE_TIMEOUT_MS", 60000, 100, 86400000);
	gw_cfg.request_timeout_ms =
	    cm_env_int("GATEWAY_REQUEST_TIMEOUT_MS", 10000, 100, 3600000);
	gw_cfg.rpc_timeout_ms =
	    cm_env_int("GATEWAY_RPC_TIMEOUT_MS", 3000, 10, 600000);
	gw_cfg.drain_timeout_ms =
	    cm_env_int("GATEWAY_DRAIN_TIMEOUT_MS", 30000, 0, 3600000);
	gw_cfg.access_log = cm_env_bool("GATEWAY_ACCESS_LOG", true) &&
	                    strcasecmp(lv, "warn") != 0 &&
	                    strcasecmp(lv, "warning") != 0 &&
	                    strcasecmp(lv, "error") != 0;
	gw_cfg.cache_bytes =
	    (size_t) cm_env_int("GATEWAY_CACHE_BYTES", 64L << 20, 0, 1L << 40);
	gw_cfg.cache_ttl_ms =
	    cm_env_int("GATEWAY_CACHE_TTL_MS", 60000, 0, 86400000);
	gw_cfg.negative_ttl_ms =
	    cm_env_int("GATEWAY_NEGATIVE_TTL_MS", 2000, 0, 3600000);
	gw_cfg.click_flush_ms =
	    cm_env_int("GATEWAY_CLICK_FLUSH_MS", 1000, 10, 3600000);
	gw_cfg.click_max_codes = (size_t) cm_env_int("GATEWAY_CLICK_MAX_CODES",
	                                             100000, 1, 100000000);
	gw_cfg.redirect_status =
	    (int) cm_env_int("REDIRECT_STATUS", 302, 301, 302);
	gw_cfg.jwt_secret = jwt_secret();
	gw_cfg.jwt_secret_len = strlen(gw_cfg.jwt_secret);
	if (gw_cfg.jwt_secret_len == 0)
		fatalx("event=config err=\"AUTH_JWT_SECRET is empty\"");
	if (strcmp(gw_cfg.jwt_secret, DEFAULT_SECRET) == 0)
		log_warnx("event=config msg=\"AUTH_JWT_SECRET is the built-in "
		          "development secret; set it outside local use\"");
	gw_cfg.metrics_token = cm_env_str("METRICS_TOKEN", "");
	if (gw_trust_parse(&gw_cfg.trust, cm_env_str("TRUSTED_PROXIES", ""),
	                   err, sizeof(err)) != 0)
		fatalx("event=config TRUSTED_PROXIES err=\"%s\"", err);
	gw_cfg.redis_url = cm_env_str("REDIS_URL", "redis://127.0.0.1:6379");
	http_parser_set_max_header_size((uint32_t) gw_cfg.max_header_bytes);
}

static void
routes_load(void)
{
	char err[256];
	size_t i;

	if (gw_router_init(&gw_router, gw_routes, gw_nroutes, gw_services,
	                   gw_nservices, err, sizeof(err)) != 0)
		fatalx("event=routes err=\"%s\"", err);
	for (i = 0; i < gw_router.n; i++) {
		struct gw_croute *r = &gw_router.routes[i];

		if (r->in == NULL)
			continue;
		if ((r->up = gw_upstream_find(r->upstream_name)) == NULL)
			fatalx("event=routes route=\"%s\" err=\"no upstream "
			       "%s\"",
			       r->label, r->upstream_name);
	}
}

static int
gw_serve(void)
{
	size_t i;
	int port, sig;

	cm_signals_block();
	config_load();
	routes_load();
	gw_upstreams_open();
	gw_ratelimit_init();
	gw_rcache_start();
	gw_metrics_init();
	gw_alog_start();

	gw_nloops = (size_t) gw_cfg.threads;
	if ((gw_loops = calloc(gw_nloops, sizeof(*gw_loops))) == NULL)
		fatalx("gateway: out of memory");
	port = gw_cfg.listen_port;
	for (i = 0; i < gw_nloops; i++) {
		if ((gw_loops[i] = calloc(1, sizeof(*gw_loops[i]))) == NULL)
			fatalx("gateway: out of memory");
		if (gw_loop_init(gw_loops[i], (unsigned) i, &port) != 0)
			fatalx("event=listen host=%s port=%d err=\"cannot "
			       "listen\"",
			       gw_cfg.listen_host, gw_cfg.listen_port);
	}
	for (i = 0; i < gw_nloops; i++)
		if (pthread_create(&gw_loops[i]->thread, NULL, gw_loop_run,
		                   gw_loops[i]) != 0)
			fatal("event=thread_create");
	log_info("event=listening addr=%s:%d threads=%zu routes=%zu "
	         "redirect_status=%d access_log=%d",
	         gw_cfg.listen_host[0] ? gw_cfg.listen_host : "*", port,
	         gw_nloops, gw_router.n, gw_cfg.redirect_status,
	         gw_cfg.access_log);

	while ((sig = cm_signals_wait()) == SIGHUP)
		log_info("event=signal signal=SIGHUP msg=ignored");
	log_info("event=draining signal=%d", sig);
	for (i = 0; i < gw_nloops; i++)
		gw_loop_drain(gw_loops[i]);
	for (i = 0; i < gw_nloops; i++)
		pthread_join(gw_loops[i]->thread, NULL);

	gw_upstreams_close();
	for (i = 0; i < gw_nloops; i++)
		gw_loop_free(gw_loops[i]);
	free(gw_loops);
	gw_alog_stop();
	gw_rcache_stop();
	gw_ratelimit_fini();
	gw_router_fini(&gw_router);
	gw_trust_fini(&gw_cfg.trust);
	log_info("event=stopped");
	return (0);
}

/* `gateway token --user NAME [--ttl S] [--claim KEY=VALUE]...` */
static int
gw_token_cmd(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"user", required_argument, NULL, 'u'},
	    {"ttl", required_argument, NULL, 't'},
	    {"claim", required_argument, NULL, 'c'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	const char *user = NULL, *keys[32], *values[32];
	char *claims[32], *tok, *end, *eq;
	long ttl = 86400;
	size_t n = 0, i;
	int ch, rv = 1;

	optind = 1;
	while ((ch = getopt_long(argc, argv, "u:t:c:h", opts, NULL)) != -1) {
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
			printf("usage: gateway token --user NAME [--ttl S] "
			       "[--claim KEY=VALUE]...\n"
			       "  prints an HS256 token signed with "
			       "AUTH_JWT_SECRET; --ttl 0: no expiry\n");
			rv = 0;
			goto out;
		default:
			goto out;
		}
	}
	if (optind != argc || user == NULL || user[0] == '\0') {
		fprintf(stderr, "usage: gateway token --user NAME [--ttl S] "
		                "[--claim KEY=VALUE]...\n");
		goto out;
	}
	tok = gw_jwt_sign(user, cm_now_s(), ttl, keys, values, n, jwt_secret(),
	                  strlen(jwt_secret()));
	if (tok == NULL) {
		fprintf(stderr, "token: cannot sign (reserved claim name?)\n");
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
     "token --user NAME [--ttl S] [--claim KEY=VALUE]...\n"
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
        "  GATEWAY_MAX_BODY_BYTES     request body (1048576)\n"
        "  GATEWAY_IDLE_TIMEOUT_MS    keep-alive idle timeout (60000)\n"
        "  GATEWAY_REQUEST_TIMEOUT_MS time to receive a request (10000)\n"
        "  GATEWAY_RPC_TIMEOUT_MS     upstream deadline (3000)\n"
        "  GATEWAY_RATELIMIT          check every request with the "
        "ratelimiter (1)\n"
        "  GATEWAY_RATELIMIT_TIMEOUT_MS  its deadline; past it the rules'\n"
        "                             failure policy applies (20)\n"
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
        "  REDIS_URL                  the redirect cache's invalidations "
        "(redis://127.0.0.1:6379)\n"
        "  AUTH_JWT_SECRET            HS256 key (dev-secret-change-me)\n"
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
