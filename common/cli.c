/*
 * The command-line frame every binary shares: --help, --version, the
 * `health` probe with grpc_health_probe's exit codes, extra subcommands,
 * CPU affinity from <NAME>_CPUS, and signal handling for services.
 */
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <nng/nng.h>
#include <nng/supplemental/util/platform.h>

#include "cli.h"
#include "config.h"
#include "health.pb-c.h"
#include "log.h"
#include "rpc/rpc.h"
#include "util.h"

enum {
	PROBE_SERVING = 0,
	PROBE_BAD_ARGS = 1,
	PROBE_UNREACHABLE = 2,
	PROBE_FAILED = 3,
	PROBE_NOT_SERVING = 4,
};

/* The name of the CPU affinity variable: "cache" -> "CACHE_CPUS". */
static void
cpus_var(const cm_cli *cli, char *var, size_t len)
{
	size_t i;

	for (i = 0; cli->name[i] != '\0' && i + 6 < len; i++)
		var[i] = (char) toupper((unsigned char) cli->name[i]);
	memcpy(var + i, "_CPUS", 6);
}

static void
usage(const cm_cli *cli, FILE *f)
{
	char var[64];

	cpus_var(cli, var, sizeof(var));
	fprintf(f,
	        "%s %s - %s\n\n"
	        "usage:\n"
	        "  %s                       run the service\n"
	        "  %s health [--addr URL] [--timeout MS]\n"
	        "                           probe a running instance; exit 0 "
	        "serving,\n"
	        "                           1 bad arguments, 2 unreachable or "
	        "timed out,\n"
	        "                           3 call failed, 4 not serving\n",
	        cli->name, CM_VERSION, cli->summary, cli->name, cli->name);
	for (const cm_cli_command *c = cli->commands; c != NULL && c->name; c++)
		fprintf(f, "  %s %s\n", cli->name, c->usage);
	fprintf(f,
	        "  %s --help | --version\n\n"
	        "environment:\n%s",
	        cli->name, cli->env_help != NULL ? cli->env_help : "");
	fprintf(f, "  %-26s CPUs to run on, e.g. 0 or 0-3,6 (all)\n", var);
	fprintf(f,
	        "  %-26s certificates for tls+tcp:// addresses: ca.crt,\n"
	        "  %-26s %s.crt and %s.key (deploy/certs.sh makes them)\n"
	        "  %-26s 1: development secrets allowed (local use only)\n",
	        "RPC_TLS_DIR", "", cli->name, cli->name, "BACKENDS_DEV_MODE");
}

/*
 * Health.Check over RPC.  The client fails at once while no server is
 * connected, so give the dialer the timeout to connect first.
 */
/*
 * The probe.  keep_open leaves the client open for the process's exit to
 * take away: NNG 1.5.2's nng_close can hang when it meets a TLS dialer in
 * the middle of a handshake, which a probe on a loaded machine sometimes
 * does, and a probe that hangs is a health check that never answers.
 */
static int
rpc_health(const char *addr, int timeout_ms, bool keep_open)
{
	cm_rpc_client *c;
	Health__HealthCheckRequest req = HEALTH__HEALTH_CHECK_REQUEST__INIT;
	Health__HealthCheckResponse *rep = NULL;
	cm_arena arena;
	char msg[256];
	int64_t deadline = cm_now_ms() + timeout_ms;
	int rv, code;

	if ((rv = cm_rpc_client_open_peer(&c, addr, cm_rpc_name())) != 0) {
		fprintf(stderr, "health: %s: %s\n", addr, nng_strerror(rv));
		return (PROBE_BAD_ARGS);
	}
	while (cm_rpc_client_connected(c) == 0 && cm_now_ms() < deadline)
		nng_msleep(5);
	if (cm_rpc_client_connected(c) == 0) {
		fprintf(stderr, "health: %s: cannot connect\n", addr);
		if (!keep_open)
			cm_rpc_client_close(c);
		return (PROBE_UNREACHABLE);
	}
	cm_arena_init(&arena);
	code = cm_rpc_call(c, NULL, "health.Health/Check", &req.base,
	                   &health__health_check_response__descriptor,
	                   (ProtobufCMessage **) &rep, deadline, &arena, msg,
	                   sizeof(msg));
	if (!keep_open)
		cm_rpc_client_close(c);
	if (code == CM_DEADLINE_EXCEEDED || code == CM_UNAVAILABLE) {
		fprintf(stderr, "health: %s: %s\n", addr, msg);
		rv = PROBE_UNREACHABLE;
	} else if (code != CM_OK) {
		fprintf(stderr, "health: %s: %s: %s\n", addr,
		        cm_code_name(code), msg);
		rv = PROBE_FAILED;
	} else {
		int serving =
		    rep->status ==
		    HEALTH__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING;
		printf("status: %s\n", serving ? "SERVING" : "NOT_SERVING");
		for (size_t i = 0; i < rep->n_dependencies; i++)
			printf("  %s: %s%s%s\n", rep->dependencies[i]->name,
			       rep->dependencies[i]->ok ? "ok" : "down",
			       *rep->dependencies[i]->detail ? " - " : "",
			       rep->dependencies[i]->detail);
		rv = serving ? PROBE_SERVING : PROBE_NOT_SERVING;
	}
	cm_arena_fini(&arena);
	return (rv);
}

int
cm_cli_rpc_health(const char *addr, int timeout_ms)
{
	return (rpc_health(addr, timeout_ms, false));
}

/* A probe that outlives its timeout (by 5 s) is stuck: unreachable. */
static void
probe_alarm(int sig)
{
	(void) sig;
	_exit(PROBE_UNREACHABLE);
}

static int
run_health(const cm_cli *cli, int argc, char **argv)
{
	static const struct option opts[] = {
	    {"addr", required_argument, NULL, 'a'},
	    {"timeout", required_argument, NULL, 't'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	const char *addr = cm_env_str(cli->addr_env, cli->addr_default);
	long timeout = 2000;
	char *end;
	int ch;

	optind = 1;
	while ((ch = getopt_long(argc, argv, "a:t:h", opts, NULL)) != -1) {
		switch (ch) {
		case 'a':
			addr = optarg;
			break;
		case 't':
			errno = 0;
			timeout = strtol(optarg, &end, 10);
			if (errno != 0 || *end != '\0' || timeout <= 0 ||
			    timeout > 600000) {
				fprintf(stderr, "health: bad --timeout\n");
				return (PROBE_BAD_ARGS);
			}
			break;
		case 'h':
			printf("usage: %s health [--addr URL] [--timeout MS]\n",
			       cli->name);
			return (0);
		default:
			return (PROBE_BAD_ARGS);
		}
	}
	if (optind != argc) {
		fprintf(stderr, "health: unexpected argument %s\n",
		        argv[optind]);
		return (PROBE_BAD_ARGS);
	}
	if (cli->health != NULL)
		return (cli->health(addr, (int) timeout));
	/* This process ends with the probe: it leaves the client to the
	 * exit (see rpc_health), and a watchdog bounds the whole probe. */
	signal(SIGALRM, probe_alarm);
	alarm((unsigned) (timeout / 1000 + 5));
	ch = rpc_health(addr, (int) timeout, true);
	fflush(stdout);
	fflush(stderr);
	_exit(ch);
}

int
cm_cli_parse_cpus(const char *list, cpu_set_t *set, int max_cpu)
{
	const char *p = list;

	CPU_ZERO(set);
	if (max_cpu >= CPU_SETSIZE)
		max_cpu = CPU_SETSIZE - 1;
	for (;;) {
		long lo, hi;
		char *end;

		if (!isdigit((unsigned char) *p))
			return (-1);
		lo = hi = strtol(p, &end, 10);
		p = end;
		if (*p == '-') {
			if (!isdigit((unsigned char) *++p))
				return (-1);
			hi = strtol(p, &end, 10);
			p = end;
		}
		if (lo > hi || hi > max_cpu)
			return (-1);
		for (long c = lo; c <= hi; c++)
			CPU_SET((int) c, set);
		if (*p == '\0')
			return (0);
		if (*p++ != ',')
			return (-1);
	}
}

/* Applies <NAME>_CPUS, if set; a bad list or CPU is fatal. */
static void
apply_cpus(const cm_cli *cli)
{
	char var[64];
	const char *list;
	cpu_set_t cs;

	cpus_var(cli, var, sizeof(var));
	if ((list = getenv(var)) == NULL || *list == '\0')
		return;
	if (cm_cli_parse_cpus(list, &cs, CPU_SETSIZE - 1) != 0)
		fatalx("event=config_error var=%s value=\"%.64s\" "
		       "err=\"a CPU list such as 0 or 0-3,6 is expected\"",
		       var, list);
	if (sched_setaffinity(0, sizeof(cs), &cs) != 0)
		fatal("event=config_error var=%s value=\"%.64s\"", var, list);
	log_info("event=cpu_affinity cpus=%s", list);
}

int
cm_cli_main(const cm_cli *cli, int argc, char **argv)
{
	log_init(cli->name);
	cm_rpc_set_name(cli->name);
	if (argc < 2) {
		if (cm_dev_mode())
			log_warnx("event=dev_mode msg=\"BACKENDS_DEV_MODE is "
			          "set: development secrets are allowed; never "
			          "outside local use\"");
		apply_cpus(cli);
		return (cli->serve());
	}
	if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
	    strcmp(argv[1], "help") == 0) {
		usage(cli, stdout);
		return (0);
	}
	if (strcmp(argv[1], "--version") == 0) {
		printf("%s %s\n", cli->name, CM_VERSION);
		return (0);
	}
	if (strcmp(argv[1], "health") == 0)
		return (run_health(cli, argc - 1, argv + 1));
	for (const cm_cli_command *c = cli->commands; c != NULL && c->name; c++)
		if (strcmp(argv[1], c->name) == 0)
			return (c->run(argc - 1, argv + 1));
	fprintf(stderr, "%s: unknown command or option: %s\n\n", cli->name,
	        argv[1]);
	usage(cli, stderr);
	return (1);
}

void
cm_signals_block(void)
{
	sigset_t set;

	signal(SIGPIPE, SIG_IGN);
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
}

int
cm_signals_wait(void)
{
	sigset_t set;
	int sig = 0;

	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGHUP);
	while (sigwait(&set, &sig) != 0)
		;
	return (sig);
}
