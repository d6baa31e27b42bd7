/*
 * The Redis store: one Lua script decides every rule a request matches,
 * atomically, with Redis's own clock.
 *
 * Why one script.  A request matching several rules must be refused by
 * any of them without spending from the others; checking rule by rule
 * from here would spend from the first before the second refuses, and
 * would race with other instances between the check and the spend.  The
 * script reads every rule's state, decides each, and writes only if all
 * non-shadow rules allow.
 *
 * Clock.  The script reads TIME (microseconds), so every instance and
 * gateway shares one clock; Redis 7 replicates a script's effects, not
 * the script, so reading the clock is allowed.
 *
 * Numbers.  Lua numbers are doubles; Redis truncates them to integers on
 * the way out, and turns them into strings of its own choosing on the way
 * in.  So the script formats what it stores itself: integers with %d,
 * fractional state (token bucket tokens, GCRA's theoretical arrival time)
 * with a fixed number of decimals, and returns only integers
 * (milliseconds, rounded up).
 *
 * The algorithms (limit L per window W, burst B, cost c, now t in us):
 *   fw    fixed window: hash {w = floor(t/W), n}; allow if n + c <= L.
 *   sl    sliding log: a sorted set of one member per admitted hit,
 *         scored by its time; entries older than W are dropped, allow if
 *         count + c <= L.  Never holds more than L members; members are
 *         "<t>-<count+j>", unique even within one microsecond (within
 *         one microsecond the count only grows).
 *   sw    sliding window counter: hash {w, c (this window), p (previous)}
 *         and the estimate p * (1 - elapsed/W) + c, as Cloudflare
 *         describes it.  It assumes the previous window's hits were
 *         spread evenly, so it may admit a little more or less than L in
 *         a true sliding window.
 *   tb    token bucket: hash {tk, ts}; capacity B, refilled at L/W.
 *   gcra  the generic cell rate algorithm as redis-cell does it: one
 *         theoretical arrival time; emission interval T = W/L, tolerance
 *         B*T; a hit is allowed if t >= tat + c*T - B*T.
 * Every key gets an expiry at the time it stops mattering.
 *
 * EVALSHA with the script's SHA; on NOSCRIPT (a restarted or flushed
 * Redis) the script is loaded again and the call retried once.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "log.h"
#include "redis.h"
#include "store.h"

/* Health: what is known is fresh for a second. */
#define HEALTH_MAX_AGE_MS 1000

static const char script[] =
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000000 + tonumber(t[2])\n"
    "local cost = tonumber(ARGV[1])\n"
    "local peek = ARGV[2] == '1'\n"
    "local res, wr, all = {}, {}, true\n"
    "local function ms(x) if x <= 0 then return 0 end\n"
    "  return math.ceil(x / 1000) end\n"
    "local function I(x) return string.format('%d', x) end\n"
    "for i = 1, #KEYS do\n"
    "  local b = 2 + (i - 1) * 5\n"
    "  local algo, key = ARGV[b + 1], KEYS[i]\n"
    "  local limit, win = tonumber(ARGV[b + 2]), tonumber(ARGV[b + 3])\n"
    "  local burst, shadow = tonumber(ARGV[b + 4]), ARGV[b + 5] == '1'\n"
    "  local ok, rem, reset, retry, w\n"
    "  if algo == 'fw' then\n"
    "    local idx = math.floor(now / win)\n"
    "    local h = redis.call('HMGET', key, 'w', 'n')\n"
    "    local n = 0\n"
    "    if tonumber(h[1]) == idx then n = tonumber(h[2]) end\n"
    "    reset = (idx + 1) * win - now\n"
    "    ok = n + cost <= limit\n"
    "    if ok then rem = limit - n - cost; retry = 0\n"
    "    else rem = limit - n; retry = reset end\n"
    "    w = function()\n"
    "      redis.call('HSET', key, 'w', I(idx), 'n', I(n + cost))\n"
    "      redis.call('PEXPIRE', key, ms(reset) + 1000) end\n"
    "  elseif algo == 'sl' then\n"
    "    redis.call('ZREMRANGEBYSCORE', key, '-inf', I(now - win))\n"
    "    local n = redis.call('ZCARD', key)\n"
    "    ok = n + cost <= limit\n"
    "    if ok then rem = limit - n - cost; retry = 0\n"
    "    else\n"
    "      rem = limit - n\n"
    "      if cost > limit then retry = win else\n"
    "        local e = redis.call('ZRANGE', key, n + cost - limit - 1,\n"
    "          n + cost - limit - 1, 'WITHSCORES')\n"
    "        retry = tonumber(e[2]) + win - now end\n"
    "    end\n"
    "    local f = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')\n"
    "    if f[2] then reset = tonumber(f[2]) + win - now\n"
    "    elseif ok then reset = win else reset = 0 end\n"
    "    w = function()\n"
    "      for j = 1, cost do\n"
    "        redis.call('ZADD', key, I(now), I(now) .. '-' .. I(n + j))\n"
    "      end\n"
    "      redis.call('PEXPIRE', key, ms(win) + 1000) end\n"
    "  elseif algo == 'sw' then\n"
    "    local idx = math.floor(now / win)\n"
    "    local h = redis.call('HMGET', key, 'w', 'c', 'p')\n"
    "    local sw, c, p = tonumber(h[1]), tonumber(h[2]) or 0,\n"
    "      tonumber(h[3]) or 0\n"
    "    if sw == idx then\n"
    "    elseif sw == idx - 1 then p = c; c = 0\n"
    "    else p = 0; c = 0 end\n"
    "    local frac = (now - idx * win) / win\n"
    "    local est = p * (1 - frac) + c\n"
    "    ok = est + cost <= limit\n"
    "    reset = (idx + 1) * win - now\n"
    "    if ok then rem = math.floor(limit - est - cost); retry = 0\n"
    "    else\n"
    "      rem = math.max(0, math.floor(limit - est))\n"
    "      local room = limit - c - cost\n"
    "      if room >= 0 and p > 0 then\n"
    "        retry = (idx + 1 - room / p) * win - now\n"
    "      else retry = reset end\n"
    "    end\n"
    "    w = function()\n"
    "      redis.call('HSET', key, 'w', I(idx), 'c', I(c + cost),\n"
    "        'p', I(p))\n"
    "      redis.call('PEXPIRE', key, ms(reset + win) + 1000) end\n"
    "  elseif algo == 'tb' then\n"
    "    local h = redis.call('HMGET', key, 'tk', 'ts')\n"
    "    local rate = limit / win\n"
    "    local tk, ts = tonumber(h[1]), tonumber(h[2])\n"
    "    if tk == nil or ts == nil then tk = burst; ts = now end\n"
    "    if now > ts then tk = math.min(burst, tk + (now - ts) * rate) end\n"
    "    ok = tk >= cost\n"
    "    local after = tk\n"
    "    if ok then after = tk - cost end\n"
    "    rem = math.floor(after)\n"
    "    reset = (burst - after) / rate\n"
    "    if ok then retry = 0 elseif cost > burst then retry = win\n"
    "    else retry = (cost - tk) / rate end\n"
    "    w = function()\n"
    "      redis.call('HSET', key, 'tk', string.format('%.6f', after),\n"
    "        'ts', I(math.max(now, ts)))\n"
    "      redis.call('PEXPIRE', key, ms(reset) + 1000) end\n"
    "  else\n"
    "    local T = win / limit\n"
    "    local dvt = T * burst\n"
    "    local tat = tonumber(redis.call('GET', key)) or now\n"
    "    if tat < now then tat = now end\n"
    "    local ntat = tat + T * cost\n"
    "    local at = ntat - dvt\n"
    "    ok = at - now <= 1\n"
    "    if ok then\n"
    "      rem = math.max(0, math.floor((dvt - (ntat - now)) / T + 1e-6))\n"
    "      reset = ntat - now; retry = 0\n"
    "    else\n"
    "      rem = math.max(0, math.floor((dvt - (tat - now)) / T + 1e-6))\n"
    "      reset = tat - now\n"
    "      if cost > burst then retry = win else retry = at - now end\n"
    "    end\n"
    "    w = function()\n"
    "      redis.call('SET', key, string.format('%.3f', ntat), 'PX',\n"
    "        ms(ntat - now) + 1000) end\n"
    "  end\n"
    "  if not ok and not shadow then all = false end\n"
    "  wr[i] = ok and w or false\n"
    "  res[i] = {ok and 1 or 0, math.max(0, rem), ms(reset), ms(retry)}\n"
    "end\n"
    "for i = 1, #KEYS do\n"
    "  if wr[i] then\n"
    "    if all and not peek then wr[i]()\n"
    "    else res[i][2] = res[i][2] + cost end\n"
    "  end\n"
    "end\n"
    "res[#KEYS + 1] = all and 1 or 0\n"
    "return res\n";

struct rl_redis {
	cm_redis *r;
	char sha[48];
};

static const char *const algo_arg[] = {
    [CM_RL_TOKEN_BUCKET] = "tb", [CM_RL_FIXED_WINDOW] = "fw",
    [CM_RL_SLIDING_LOG] = "sl",  [CM_RL_SLIDING_WINDOW] = "sw",
    [CM_RL_GCRA] = "gcra",
};

static int
load_script(struct rl_redis *s)
{
	redisReply *r;

	r = cm_redis_cmd(s->r, "SCRIPT LOAD %s", script);
	if (r == NULL)
		return (-1);
	if (r->type != REDIS_REPLY_STRING || r->len >= sizeof(s->sha)) {
		log_warnx("event=script_load err=\"%s\"",
		          r->type == REDIS_REPLY_ERROR ? r->str : "bad reply");
		freeReplyObject(r);
		return (-1);
	}
	memcpy(s->sha, r->str, r->len);
	s->sha[r->len] = '\0';
	freeReplyObject(r);
	return (0);
}

#define ARGS_MAX (3 + CM_RL_MAX_MATCH * 6 + 2)

static int
redis_check(void *impl, const struct cm_rl_match *m, size_t n, int64_t cost,
            bool peek, struct rl_verdict *v, bool *all)
{
	struct rl_redis *s = impl;
	const char *argv[ARGS_MAX];
	size_t argl[ARGS_MAX];
	char nums[CM_RL_MAX_MATCH][3][24], nk[8], costs[24];
	redisReply *r = NULL;
	int argc = 0, attempt, rv = -1;
	size_t i;

	if (n == 0) {
		*all = true;
		return (0);
	}
	if (n > CM_RL_MAX_MATCH)
		n = CM_RL_MAX_MATCH;
	if (s->sha[0] == '\0' && load_script(s) != 0)
		return (-1);
	argv[argc++] = "EVALSHA";
	argv[argc++] = s->sha;
	snprintf(nk, sizeof(nk), "%zu", n);
	argv[argc++] = nk;
	for (i = 0; i < n; i++)
		argv[argc++] = m[i].key;
	snprintf(costs, sizeof(costs), "%lld", (long long) cost);
	argv[argc++] = costs;
	argv[argc++] = peek ? "1" : "0";
	for (i = 0; i < n; i++) {
		snprintf(nums[i][0], 24, "%lld", (long long) m[i].lim.limit);
		snprintf(nums[i][1], 24, "%lld",
		         (long long) m[i].lim.window_ms * 1000);
		snprintf(nums[i][2], 24, "%lld", (long long) m[i].lim.burst);
		argv[argc++] = algo_arg[m[i].rule->algo];
		argv[argc++] = nums[i][0];
		argv[argc++] = nums[i][1];
		argv[argc++] = nums[i][2];
		argv[argc++] = m[i].rule->shadow ? "1" : "0";
	}
	for (i = 0; i < (size_t) argc; i++)
		argl[i] = strlen(argv[i]);
	for (attempt = 0; attempt < 2; attempt++) {
		argv[1] = s->sha;
		argl[1] = strlen(s->sha);
		r = cm_redis_cmdargv(s->r, argc, argv, argl);
		if (r == NULL)
			return (-1);
		if (r->type == REDIS_REPLY_ERROR &&
		    strncmp(r->str, "NOSCRIPT", 8) == 0) {
			freeReplyObject(r);
			r = NULL;
			if (load_script(s) != 0)
				return (-1);
			continue;
		}
		break;
	}
	if (r == NULL)
		return (-1);
	if (r->type != REDIS_REPLY_ARRAY || r->elements != n + 1) {
		log_warnx("event=script err=\"%s\"",
		          r->type == REDIS_REPLY_ERROR ? r->str : "bad reply");
		goto out;
	}
	for (i = 0; i < n; i++) {
		redisReply *e = r->element[i];

		if (e->type != REDIS_REPLY_ARRAY || e->elements != 4)
			goto out;
		v[i].allowed = e->element[0]->integer != 0;
		v[i].remaining = e->element[1]->integer;
		v[i].reset_ms = e->element[2]->integer;
		v[i].retry_ms = e->element[3]->integer;
	}
	*all = r->element[n]->integer != 0;
	rv = 0;
out:
	freeReplyObject(r);
	return (rv);
}

static bool
redis_health(void *impl, bool probe)
{
	struct rl_redis *s = impl;
	int64_t age;

	if (probe)
		return (cm_redis_check(s->r, HEALTH_MAX_AGE_MS));
	return (cm_redis_state(s->r, &age));
}

static void
redis_close(void *impl)
{
	struct rl_redis *s = impl;

	if (s == NULL)
		return;
	cm_redis_free(s->r);
	free(s);
}

static const struct rl_store_ops redis_ops = {
    .name = "redis",
    .check = redis_check,
    .health = redis_health,
    .close = redis_close,
};

void
rl_redis_open(struct rl_store *st, const char *url, int timeout_ms)
{
	struct rl_redis *s = calloc(1, sizeof(*s));

	if (s == NULL)
		fatal("event=rl_redis_open");
	s->r = cm_redis_new(url, timeout_ms);
	st->ops = &redis_ops;
	st->impl = s;
}
