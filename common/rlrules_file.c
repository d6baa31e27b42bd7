/*
 * The rules file: YAML (JSON being YAML, a .json file works too), read
 * with libyaml into a document tree that is turned into a jansson value,
 * so the rule reader works on one generic tree whatever the syntax.  Plain
 * scalars become numbers or booleans when they look like one; quoted ones
 * stay strings.  The format is described in the shipped default file,
 * deploy/ratelimit-rules.yaml.
 *
 * Both the rate limiter (its rules) and the gateway (its rules until the
 * rate limiter's first Rules reply, so that every rule's failure policy is
 * known before the first request) read the file here, so the two cannot
 * disagree on what it says.
 */
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <yaml.h>

#include "config.h"
#include "rlrules.h"
#include "status.h"

/* ---- YAML -> jansson ---- */

static json_t *
scalar_value(const yaml_node_t *n)
{
	const char *s = (const char *) n->data.scalar.value;
	size_t len = n->data.scalar.length;
	char *end;
	long long v;

	if (n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
		return (json_stringn(s, len));
	if (len == 0 || strcmp(s, "~") == 0 || strcmp(s, "null") == 0)
		return (json_null());
	if (strcmp(s, "true") == 0 || strcmp(s, "yes") == 0 ||
	    strcmp(s, "on") == 0)
		return (json_true());
	if (strcmp(s, "false") == 0 || strcmp(s, "no") == 0 ||
	    strcmp(s, "off") == 0)
		return (json_false());
	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno == 0 && end != s && *end == '\0')
		return (json_integer(v));
	return (json_stringn(s, len));
}

static json_t *
yaml_to_json(yaml_document_t *d, yaml_node_t *n, int depth)
{
	json_t *out;
	yaml_node_item_t *it;
	yaml_node_pair_t *p;

	if (n == NULL || depth > 32)
		return (NULL);
	switch (n->type) {
	case YAML_SCALAR_NODE:
		return (scalar_value(n));
	case YAML_SEQUENCE_NODE:
		out = json_array();
		for (it = n->data.sequence.items.start;
		     it < n->data.sequence.items.top; it++) {
			json_t *v = yaml_to_json(
			    d, yaml_document_get_node(d, *it), depth + 1);
			if (v == NULL) {
				json_decref(out);
				return (NULL);
			}
			json_array_append_new(out, v);
		}
		return (out);
	case YAML_MAPPING_NODE:
		out = json_object();
		for (p = n->data.mapping.pairs.start;
		     p < n->data.mapping.pairs.top; p++) {
			yaml_node_t *k = yaml_document_get_node(d, p->key);
			json_t *v;

			if (k == NULL || k->type != YAML_SCALAR_NODE) {
				json_decref(out);
				return (NULL);
			}
			v = yaml_to_json(d, yaml_document_get_node(d, p->value),
			                 depth + 1);
			if (v == NULL) {
				json_decref(out);
				return (NULL);
			}
			json_object_set_new(
			    out, (const char *) k->data.scalar.value, v);
		}
		return (out);
	default:
		return (NULL);
	}
}

/* ---- rules ---- */

static int fail(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int
fail(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	return (CM_INVALID_ARGUMENT);
}

/* "90", 90, "90s", "1m", "2h", "1d", "500ms" -> milliseconds; -1 if bad. */
static int64_t
parse_duration(const json_t *v)
{
	const char *s, *u;
	char *end;
	double x;

	if (json_is_integer(v))
		return (json_integer_value(v) > 0
		            ? (int64_t) json_integer_value(v) * 1000
		            : -1);
	if (!json_is_string(v))
		return (-1);
	s = json_string_value(v);
	errno = 0;
	x = strtod(s, &end);
	if (errno != 0 || end == s || x <= 0)
		return (-1);
	u = end;
	while (*u == ' ')
		u++;
	if (*u == '\0' || strcmp(u, "s") == 0 || strcmp(u, "sec") == 0)
		x *= 1000;
	else if (strcmp(u, "ms") == 0)
		;
	else if (strcmp(u, "m") == 0 || strcmp(u, "min") == 0)
		x *= 60000;
	else if (strcmp(u, "h") == 0 || strcmp(u, "hour") == 0)
		x *= 3600000;
	else if (strcmp(u, "d") == 0 || strcmp(u, "day") == 0)
		x *= 86400000;
	else
		return (-1);
	return (x >= 1 ? (int64_t) x : -1);
}

static int
parse_limit(json_t *o, const struct cm_rl_limit *base, struct cm_rl_limit *out,
            const char *what, char *err, size_t errlen)
{
	json_t *v;

	*out = *base;
	if (json_is_string(o) &&
	    strcmp(json_string_value(o), "unlimited") == 0) {
		out->unlimited = true;
		return (0);
	}
	if (!json_is_object(o))
		return (fail(err, errlen, "%s: expected a mapping", what));
	if ((v = json_object_get(o, "unlimited")) != NULL && json_is_true(v)) {
		out->unlimited = true;
		return (0);
	}
	out->unlimited = false;
	if ((v = json_object_get(o, "limit")) != NULL) {
		if (!json_is_integer(v) || json_integer_value(v) < 0 ||
		    json_integer_value(v) > 1000000000000LL)
			return (fail(err, errlen,
			             "%s: limit must be an integer >= 0",
			             what));
		out->limit = json_integer_value(v);
	}
	if ((v = json_object_get(o, "window")) != NULL &&
	    (out->window_ms = parse_duration(v)) <= 0)
		return (fail(err, errlen,
		             "%s: window must be a duration (60, \"1m\")",
		             what));
	if ((v = json_object_get(o, "burst")) != NULL) {
		if (!json_is_integer(v) || json_integer_value(v) < 0)
			return (fail(err, errlen,
			             "%s: burst must be an integer >= 0",
			             what));
		out->burst = json_integer_value(v);
	}
	if (out->limit < 0 || out->window_ms <= 0)
		return (fail(err, errlen, "%s: limit and window are required",
		             what));
	return (0);
}

static const char *
str_member(json_t *o, const char *k)
{
	json_t *v = json_object_get(o, k);

	return (json_is_string(v) ? json_string_value(v) : NULL);
}

static char *
xstrdup(const char *s)
{
	char *p = strdup(s);

	if (p == NULL)
		abort();
	return (p);
}

static const char *const rule_keys[] = {
    "name",   "method", "path",   "key",     "algorithm", "limit",
    "window", "burst",  "shadow", "failure", "tiers",     NULL,
};

static int
parse_rule(json_t *o, size_t idx, struct cm_rl_rule *r, char *err,
           size_t errlen)
{
	static const struct cm_rl_limit nolimit = {.limit = -1,
	                                           .window_ms = -1};
	char what[96];
	const char *s, *k;
	json_t *v, *tv;
	size_t i;

	snprintf(what, sizeof(what), "rule %zu", idx + 1);
	if (!json_is_object(o))
		return (fail(err, errlen, "%s: expected a mapping", what));
	json_object_foreach(o, k, v)
	{
		for (i = 0; rule_keys[i] != NULL; i++)
			if (strcmp(rule_keys[i], k) == 0)
				break;
		if (rule_keys[i] == NULL)
			return (fail(err, errlen, "%s: unknown field \"%s\"",
			             what, k));
	}
	s = str_member(o, "name");
	if (!cm_rl_name_valid(s))
		return (fail(err, errlen,
		             "%s: name is required (1-64 characters, no "
		             "braces, colons or spaces)",
		             what));
	r->name = xstrdup(s);
	snprintf(what, sizeof(what), "rule \"%s\"", r->name);
	if ((s = str_member(o, "method")) != NULL && strcmp(s, "*") != 0) {
		r->method = xstrdup(s);
		for (i = 0; r->method[i]; i++)
			r->method[i] = (char) toupper((unsigned char) s[i]);
	}
	s = str_member(o, "path");
	if (s != NULL && s[0] != '/')
		return (fail(err, errlen, "%s: path must start with /", what));
	r->path = xstrdup(s ? s : "/**");
	s = str_member(o, "key");
	r->key = CM_RL_KEY_IP;
	if (s != NULL && cm_rl_keyby_parse(s, &r->key) != 0)
		return (fail(err, errlen,
		             "%s: key must be ip, user, anon_ip, user_or_ip, "
		             "api_key or global",
		             what));
	s = str_member(o, "algorithm");
	r->algo = CM_RL_SLIDING_WINDOW;
	if (s != NULL && cm_rl_algo_parse(s, &r->algo) != 0)
		return (fail(err, errlen,
		             "%s: algorithm must be token_bucket, "
		             "fixed_window, sliding_log, sliding_window or "
		             "gcra",
		             what));
	if (parse_limit(o, &nolimit, &r->lim, what, err, errlen) != 0)
		return (CM_INVALID_ARGUMENT);
	if ((v = json_object_get(o, "shadow")) != NULL) {
		if (!json_is_boolean(v))
			return (fail(err, errlen, "%s: shadow is true/false",
			             what));
		r->shadow = json_is_true(v);
	}
	if ((s = str_member(o, "failure")) != NULL) {
		if (strcmp(s, "closed") == 0)
			r->fail_closed = true;
		else if (strcmp(s, "open") != 0)
			return (fail(err, errlen,
			             "%s: failure must be open or closed",
			             what));
	}
	if ((v = json_object_get(o, "tiers")) != NULL) {
		if (!json_is_object(v))
			return (fail(err, errlen,
			             "%s: tiers must map a tier name to its "
			             "limit",
			             what));
		r->tiers = calloc(json_object_size(v) + 1, sizeof(*r->tiers));
		if (r->tiers == NULL)
			abort();
		json_object_foreach(v, k, tv)
		{
			struct cm_rl_tier *t = &r->tiers[r->ntiers++];
			char twhat[160];

			t->name = xstrdup(k);
			snprintf(twhat, sizeof(twhat), "%s tier \"%s\"", what,
			         k);
			if (parse_limit(tv, &r->lim, &t->lim, twhat, err,
			                errlen) != 0)
				return (CM_INVALID_ARGUMENT);
		}
	}
	return (0);
}

static int
rules_from_json(json_t *top, struct cm_rl_rules *rs, char *err, size_t errlen)
{
	json_t *rules, *v;
	const char *k;
	size_t i, j;

	if (top == NULL || json_is_null(top))
		return (0);
	if (!json_is_object(top))
		return (fail(err, errlen, "expected a mapping with \"rules\""));
	json_object_foreach(top, k, v)
	{
		if (strcmp(k, "rules") != 0)
			return (fail(err, errlen,
			             "unknown top-level field "
			             "\"%s\"",
			             k));
	}
	rules = json_object_get(top, "rules");
	if (rules == NULL || json_is_null(rules))
		return (0);
	if (!json_is_array(rules))
		return (fail(err, errlen, "rules must be a list"));
	rs->v = calloc(json_array_size(rules) + 1, sizeof(*rs->v));
	if (rs->v == NULL)
		abort();
	json_array_foreach(rules, i, v)
	{
		rs->n = i + 1;
		if (parse_rule(v, i, &rs->v[i], err, errlen) != 0)
			return (CM_INVALID_ARGUMENT);
		for (j = 0; j < i; j++)
			if (strcmp(rs->v[j].name, rs->v[i].name) == 0)
				return (fail(err, errlen,
				             "rule name \"%s\" is used twice",
				             rs->v[i].name));
	}
	return (0);
}

int
cm_rl_rules_parse(const char *text, size_t len, const char *source,
                  struct cm_rl_rules **out, char *err, size_t errlen)
{
	yaml_parser_t parser;
	yaml_document_t doc;
	yaml_node_t *root;
	struct cm_rl_rules *rs;
	json_t *top = NULL;
	int rv = 0;

	if ((rs = calloc(1, sizeof(*rs))) == NULL)
		abort();
	rs->source = xstrdup(source ? source : "");
	rs->loaded_at = (int64_t) time(NULL);
	rs->refs = 1;
	if (!yaml_parser_initialize(&parser))
		abort();
	yaml_parser_set_input_string(&parser, (const unsigned char *) text,
	                             len);
	if (!yaml_parser_load(&parser, &doc)) {
		rv = fail(err, errlen, "%s:%zu:%zu: %s", rs->source,
		          parser.problem_mark.line + 1,
		          parser.problem_mark.column + 1,
		          parser.problem ? parser.problem : "syntax error");
		yaml_parser_delete(&parser);
		cm_rl_rules_free(rs);
		return (rv);
	}
	root = yaml_document_get_root_node(&doc);
	if (root != NULL && (top = yaml_to_json(&doc, root, 0)) == NULL)
		rv = fail(err, errlen, "%s: unsupported YAML construct",
		          rs->source);
	yaml_document_delete(&doc);
	yaml_parser_delete(&parser);
	if (rv == 0)
		rv = rules_from_json(top, rs, err, errlen);
	json_decref(top);
	if (rv != 0) {
		cm_rl_rules_free(rs);
		return (rv);
	}
	/* FNV-1a of the text: replicas loading the same file agree. */
	rs->version = 1469598103934665603ULL;
	for (size_t i = 0; i < len; i++)
		rs->version =
		    (rs->version ^ (unsigned char) text[i]) * 1099511628211ULL;
	*out = rs;
	return (0);
}

int
cm_rl_rules_load(const char *path, struct cm_rl_rules **out, char *err,
                 size_t errlen)
{
	FILE *f;
	char *buf = NULL;
	size_t len = 0, cap = 0, n;
	int rv;

	if ((f = fopen(path, "r")) == NULL)
		return (fail(err, errlen, "%s: %s", path, strerror(errno)));
	for (;;) {
		if (len + 4096 > cap) {
			cap = cap ? cap * 2 : 8192;
			if (cap > (16u << 20)) {
				fclose(f);
				free(buf);
				return (
				    fail(err, errlen, "%s: too large", path));
			}
			if ((buf = realloc(buf, cap)) == NULL)
				abort();
		}
		n = fread(buf + len, 1, cap - len, f);
		len += n;
		if (n == 0)
			break;
	}
	fclose(f);
	rv = cm_rl_rules_parse(buf ? buf : "", len, path, out, err, errlen);
	free(buf);
	return (rv);
}

const char *
cm_rl_rules_path(void)
{
	const char *p = cm_env_str("RATELIMIT_RULES", NULL);

	if (p != NULL)
		return (p);
	if (access(CM_RL_RULES_INSTALLED, R_OK) == 0)
		return (CM_RL_RULES_INSTALLED);
	return (CM_RL_RULES_SOURCE);
}
