/*
 * The gateway's route table: data only.
 *
 * Each row maps "METHOD /path/{param}" to a registered handler (by name;
 * "rpc", the default, transcodes JSON <-> protobuf) and, for transcoded
 * routes, to an RPC named "pkg.Service/Method".  Path and query parameters
 * bind to the input message's fields by name, the body (JSON, or raw bytes
 * into one field) fills the rest, and the output message becomes the JSON
 * reply.  Options say which status a success answers (201 for a create,
 * 204 for a delete), whether a token is required, where the body goes and
 * how large it may be.
 *
 * Adding a service's API is data only: append its rows here, list its
 * service descriptor in gw_services, and give it one line in the upstream
 * table (core/upstream.c).  Its upstream is the RPC's proto package unless
 * the row names another.
 */
#include "cache.pb-c.h"
#include "health.pb-c.h"
#include "notifier.pb-c.h"
#include "ratelimiter.pb-c.h"
#include "shortener.pb-c.h"

#include "gwlib.h"

const struct gw_route gw_routes[] = {
    /* Cache, for operators: the service checks the admin role. */
    {.method = "GET",
     .path = "/api/v1/cache/stats",
     .rpc = "cache.Cache/Stats",
     .auth = GW_AUTH_REQUIRED},
    /* Values as they were put, with their content type ("cache"). */
    {.method = "GET",
     .path = "/api/v1/cache/{ns}/{key}",
     .handler = "cache",
     .rpc = "cache.Cache/Get",
     .auth = GW_AUTH_REQUIRED,
     .flags = GW_RF_KEY_LIMIT},
    {.method = "PUT",
     .path = "/api/v1/cache/{ns}/{key}",
     .handler = "cache",
     .rpc = "cache.Cache/Set",
     .status = 204,
     .auth = GW_AUTH_REQUIRED,
     .body = GW_BODY_RAW,
     .body_field = "value",
     .flags = GW_RF_KEY_LIMIT},
    {.method = "DELETE",
     .path = "/api/v1/cache/{ns}/{key}",
     .rpc = "cache.Cache/Delete",
     .status = 204,
     .auth = GW_AUTH_REQUIRED,
     .flags = GW_RF_KEY_LIMIT},
    {.method = "POST",
     .path = "/api/v1/cache/{ns}/invalidate",
     .rpc = "cache.Cache/InvalidateTags",
     .auth = GW_AUTH_REQUIRED,
     .body = GW_BODY_JSON},
    {.method = "POST",
     .path = "/api/v1/cache/{ns}/bump",
     .rpc = "cache.Cache/BumpVersion",
     .auth = GW_AUTH_REQUIRED},

    /* The gateway's own endpoints. */
    {.method = "GET",
     .path = "/healthz",
     .handler = "health",
     .auth = GW_AUTH_NONE},
    {.method = "GET",
     .path = "/metrics",
     .handler = "metrics",
     .auth = GW_AUTH_NONE},

    /* URL shortener. */
    {.method = "POST",
     .path = "/api/v1/urls",
     .rpc = "shortener.Shortener/Create",
     .status = 201,
     .body = GW_BODY_JSON},
    {.method = "GET",
     .path = "/api/v1/urls",
     .rpc = "shortener.Shortener/List",
     .auth = GW_AUTH_REQUIRED},
    {.method = "GET",
     .path = "/api/v1/urls/{code}",
     .rpc = "shortener.Shortener/Get"},
    {.method = "DELETE",
     .path = "/api/v1/urls/{code}",
     .rpc = "shortener.Shortener/Delete",
     .status = 204,
     .auth = GW_AUTH_REQUIRED,
     .flags = GW_RF_DROP_CODE},
    /* Rate limiter admin (the service checks the admin role). */
    {.method = "GET",
     .path = "/api/v1/ratelimit/rules",
     .rpc = "ratelimiter.RateLimiter/Rules",
     .auth = GW_AUTH_REQUIRED},
    {.method = "GET",
     .path = "/api/v1/ratelimit/status",
     .rpc = "ratelimiter.RateLimiter/Status",
     .auth = GW_AUTH_REQUIRED},
    /* Notifier.  Operators (role=admin, which the service checks): send,
     * look up, dead letters and their replay.  Users: their own
     * preferences, devices, contact and inbox.  Unsubscribe links need
     * no login (RFC 8058 one-click POST; the token is the proof). */
    {.method = "POST",
     .path = "/api/v1/notifications",
     .rpc = "notifier.Notifier/Send",
     .status = 202,
     .auth = GW_AUTH_REQUIRED,
     .body = GW_BODY_JSON},
    {.method = "GET",
     .path = "/api/v1/notifications/dead",
     .rpc = "notifier.Notifier/ListDead",
     .auth = GW_AUTH_REQUIRED},
    {.method = "POST",
     .path = "/api/v1/notifications/dead/{id}/replay",
     .rpc = "notifier.Notifier/Replay",
     .auth = GW_AUTH_REQUIRED},
    {.method = "GET",
     .path = "/api/v1/notifications/{id}",
     .rpc = "notifier.Notifier/Get",
     .auth = GW_AUTH_REQUIRED},
    {.method = "PUT",
     .path = "/api/v1/me/notification-preferences",
     .rpc = "notifier.Notifier/PutPreferences",
     .auth = GW_AUTH_REQUIRED,
     .body = GW_BODY_JSON},
    {.method = "GET",
     .path = "/api/v1/me/notification-preferences",
     .rpc = "notifier.Notifier/GetPreferences",
     .auth = GW_AUTH_REQUIRED},
    {.method = "POST",
     .path = "/api/v1/me/devices",
     .rpc = "notifier.Notifier/AddDevice",
     .status = 201,
     .auth = GW_AUTH_REQUIRED,
     .body = GW_BODY_JSON},
    {.method = "GET",
     .path = "/api/v1/me/devices",
     .rpc = "notifier.Notifier/ListDevices",
     .auth = GW_AUTH_REQUIRED},
    {.method = "DELETE",
     .path = "/api/v1/me/devices/{id}",
     .rpc = "notifier.Notifier/DeleteDevice",
     .status = 204,
     .auth = GW_AUTH_REQUIRED},
    {.method = "PUT",
     .path = "/api/v1/me/contact",
     .rpc = "notifier.Notifier/PutContact",
     .auth = GW_AUTH_REQUIRED,
     .body = GW_BODY_JSON},
    {.method = "GET",
     .path = "/api/v1/me/contact",
     .rpc = "notifier.Notifier/GetContact",
     .auth = GW_AUTH_REQUIRED},
    {.method = "POST",
     .path = "/api/v1/me/contact/confirm",
     .rpc = "notifier.Notifier/ConfirmContact",
     .auth = GW_AUTH_REQUIRED,
     .body = GW_BODY_JSON},
    {.method = "GET",
     .path = "/api/v1/me/notifications",
     .rpc = "notifier.Notifier/ListInbox",
     .auth = GW_AUTH_REQUIRED},
    {.method = "POST",
     .path = "/api/v1/me/notifications/read-all",
     .rpc = "notifier.Notifier/MarkAllRead",
     .auth = GW_AUTH_REQUIRED},
    {.method = "POST",
     .path = "/api/v1/me/notifications/{id}/read",
     .rpc = "notifier.Notifier/MarkRead",
     .status = 204,
     .auth = GW_AUTH_REQUIRED},
    {.method = "POST",
     .path = "/u/{token}",
     .rpc = "notifier.Notifier/Unsubscribe",
     .auth = GW_AUTH_NONE},
    {.method = "GET",
     .path = "/{code}",
     .handler = "redirect",
     .rpc = "shortener.Shortener/Resolve"},
};
const size_t gw_nroutes = sizeof(gw_routes) / sizeof(gw_routes[0]);

const ProtobufCServiceDescriptor *const gw_services[] = {
    &health__health__descriptor,       &cache__cache__descriptor,
    &shortener__shortener__descriptor, &ratelimiter__rate_limiter__descriptor,
    &notifier__notifier__descriptor,
};
const size_t gw_nservices = sizeof(gw_services) / sizeof(gw_services[0]);
