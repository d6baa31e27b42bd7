/* `gateway health` (probe.c): the CLI probe of a running gateway. */
#ifndef GW_PROBE_H
#define GW_PROBE_H

/* Probes addr's GET /healthz; grpc_health_probe's exit codes. */
int gw_health_probe(const char *addr, int timeout_ms);

#endif
