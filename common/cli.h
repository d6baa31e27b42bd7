/*
 * The common frame of every binary's command line:
 *   <binary> [--help | --version]
 *   <binary> health [--addr URL] [--timeout MS]
 *   <binary>                 run the service
 * plus subcommands a binary adds (e.g. "gateway token").
 *
 * `health` follows grpc_health_probe's exit codes: 0 SERVING, 1 bad
 * arguments, 2 cannot connect or timed out, 3 the call failed, 4
 * NOT_SERVING.
 */
#ifndef CM_CLI_H
#define CM_CLI_H

#include <sched.h> /* cpu_set_t (_GNU_SOURCE, which CMake defines) */

typedef struct cm_cli_command {
	const char *name;                  /* e.g. "token" */
	const char *usage;                 /* one line for --help */
	int (*run)(int argc, char **argv); /* argv[0] is the command name */
} cm_cli_command;

typedef struct cm_cli {
	const char *name;     /* binary name, e.g. "shortener" */
	const char *summary;  /* one line */
	const char *env_help; /* the environment variables, for --help */
	const char *addr_env; /* e.g. "SHORTENER_ADDR" */
	const char *addr_default;
	/* Probe for `health`; NULL uses Health.Check over RPC at --addr. */
	int (*health)(const char *addr, int timeout_ms);
	const cm_cli_command *commands; /* extra subcommands, NULL-terminated */
	int (*serve)(void);             /* runs the service */
} cm_cli;

/* Parses argv and runs what it asks for; returns the process exit code. */
int cm_cli_main(const cm_cli *cli, int argc, char **argv);

/*
 * CPU affinity.  A service runs on the CPUs its <NAME>_CPUS variable lists
 * (e.g. CACHE_CPUS=0, GATEWAY_CPUS=0-1,3), set before any thread starts, so
 * NNG's and the service's threads all inherit it; unset, on every CPU.
 * Confining a service whose requests are short (the cache) to one core
 * keeps NNG's shared locks from bouncing between cores.
 *
 * cm_cli_parse_cpus parses such a list into set: 0, or -1 for a malformed
 * list, a CPU beyond max_cpu (at most CPU_SETSIZE - 1), or an empty list.
 */
int cm_cli_parse_cpus(const char *list, cpu_set_t *set, int max_cpu);

/* The RPC health probe, usable on its own; returns the exit code above. */
int cm_cli_rpc_health(const char *addr, int timeout_ms);

/*
 * Signals for services that run worker threads: cm_signals_block() blocks
 * SIGINT, SIGTERM and SIGHUP (call it before starting any thread, so every
 * thread inherits the mask) and ignores SIGPIPE; cm_signals_wait() then
 * waits for one of them and returns its number.
 */
void cm_signals_block(void);
int cm_signals_wait(void);
#endif
