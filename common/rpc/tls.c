/*
 * Mutual TLS for the RPC transport (tls+tcp:// addresses).
 *
 * The stack's certificates live in one directory, RPC_TLS_DIR (made by
 * deploy/certs.sh): ca.crt, the stack's CA, and <name>.crt / <name>.key for
 * each service, whose certificate carries its name as a DNS SAN (mbedTLS
 * 2.28, which Debian's NNG uses, does not match IP SANs, so a client
 * checks the name it expects, not the address it dials).  A process
 * presents the certificate of its own name (cm_rpc_set_name; cm_cli_main
 * sets the binary's).
 *
 * A listener requires a client certificate signed by the CA: a peer
 * without one, or with one of another CA, fails the handshake and never
 * gets a pipe, so every request a tls+tcp:// server serves comes from one
 * of the stack's services and its metadata (user id, role, client address)
 * is believed.  A dialer checks that the server's certificate is signed by
 * the CA and names the service it meant to reach.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <nng/nng.h>
#include <nng/supplemental/tls/tls.h>

#include "config.h"
#include "internal.h"
#include "util.h"

#define PEM_MAX (64 * 1024)

static char self_name[64] = "client";

void
cm_rpc_set_name(const char *name)
{
	cm_strlcpy(self_name, name, sizeof(self_name));
}

const char *
cm_rpc_name(void)
{
	return (self_name);
}

bool
cm_rpc_url_is_tls(const char *url)
{
	return (strncmp(url, "tls+tcp://", 10) == 0);
}

/* Reads a whole PEM file into a NUL-terminated malloc'd string. */
static char *
pem_read(const char *path, char *err, size_t errlen)
{
	FILE *f;
	char *buf;
	size_t n;

	if ((f = fopen(path, "r")) == NULL) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return (NULL);
	}
	if ((buf = malloc(PEM_MAX + 1)) == NULL) {
		fclose(f);
		snprintf(err, errlen, "out of memory");
		return (NULL);
	}
	n = fread(buf, 1, PEM_MAX + 1, f);
	fclose(f);
	if (n == 0 || n > PEM_MAX) {
		free(buf);
		snprintf(err, errlen, "%s: %s", path,
		         n == 0 ? "empty or unreadable" : "larger than 64 KiB");
		return (NULL);
	}
	buf[n] = '\0';
	return (buf);
}

int
cm_rpc_tls_config(nng_tls_config **out, bool server, const char *peer,
                  char *err, size_t errlen)
{
	const char *dir = cm_env_str("RPC_TLS_DIR", NULL);
	char path[512];
	char *ca = NULL, *cert = NULL, *key = NULL;
	nng_tls_config *cfg = NULL;
	int rv = -1, nrv;

	if (dir == NULL) {
		snprintf(err, errlen,
		         "a tls+tcp:// address needs RPC_TLS_DIR (the stack's "
		         "ca.crt and %s.crt/.key, made by deploy/certs.sh)",
		         self_name);
		return (-1);
	}
	snprintf(path, sizeof(path), "%s/ca.crt", dir);
	if ((ca = pem_read(path, err, errlen)) == NULL)
		goto out;
	snprintf(path, sizeof(path), "%s/%s.crt", dir, self_name);
	if ((cert = pem_read(path, err, errlen)) == NULL)
		goto out;
	snprintf(path, sizeof(path), "%s/%s.key", dir, self_name);
	if ((key = pem_read(path, err, errlen)) == NULL)
		goto out;
	if ((nrv = nng_tls_config_alloc(&cfg, server ? NNG_TLS_MODE_SERVER
	                                             : NNG_TLS_MODE_CLIENT)) !=
	    0) {
		snprintf(err, errlen, "TLS: %s", nng_strerror(nrv));
		goto out;
	}
	if ((nrv = nng_tls_config_ca_chain(cfg, ca, NULL)) != 0) {
		snprintf(err, errlen, "%s/ca.crt: %s", dir, nng_strerror(nrv));
		goto out;
	}
	if ((nrv = nng_tls_config_own_cert(cfg, cert, key, NULL)) != 0) {
		snprintf(err, errlen, "%s/%s.crt or .key: %s", dir, self_name,
		         nng_strerror(nrv));
		goto out;
	}
	if ((nrv = nng_tls_config_auth_mode(cfg, NNG_TLS_AUTH_MODE_REQUIRED)) !=
	        0 ||
	    (nrv = nng_tls_config_version(cfg, NNG_TLS_1_2, NNG_TLS_1_2)) !=
	        0 ||
	    (!server && (nrv = nng_tls_config_server_name(cfg, peer)) != 0)) {
		snprintf(err, errlen, "TLS: %s", nng_strerror(nrv));
		goto out;
	}
	*out = cfg;
	cfg = NULL;
	rv = 0;
out:
	if (cfg != NULL)
		nng_tls_config_free(cfg);
	free(ca);
	free(cert);
	if (key != NULL) {
		explicit_bzero(key, strlen(key));
		free(key);
	}
	return (rv);
}
