# deploy/redis.Dockerfile: Redis from Debian, append-only persistence in /data.
FROM debian:bookworm
ARG DEBIAN_FRONTEND=noninteractive
# policy-rc.d: the package must not try to start a server during the build.
RUN printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d \
 && chmod +x /usr/sbin/policy-rc.d \
 && apt-get update \
 && apt-get install -y --no-install-recommends redis-server \
 && rm -rf /var/lib/apt/lists/* /usr/sbin/policy-rc.d \
 && mkdir -p /data \
 && chown redis:redis /data
USER redis
VOLUME /data
EXPOSE 6379
# No password, so protected mode would refuse the other containers: the
# port is reachable only on the compose network.
CMD ["redis-server", "--bind", "0.0.0.0", "--protected-mode", "no", \
     "--appendonly", "yes", "--dir", "/data"]
