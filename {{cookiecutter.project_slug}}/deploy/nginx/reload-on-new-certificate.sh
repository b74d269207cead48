#!/bin/sh
# nginx reloads the site's certificate when certbot replaces it (https=letsencrypt).
#
# The official nginx image runs /docker-entrypoint.d/*.sh before nginx starts (compose.yaml mounts
# this file there): this one leaves a watcher behind that checks TLS_CERTIFICATE every
# TLS_WATCH_SECONDS and, when it changed, sends nginx's master SIGHUP: a graceful reload, which
# keeps every open connection (WebSockets included) on the old workers and serves new ones with the
# new certificate. nginx tests the new configuration itself and keeps the old one when it fails
# (an [emerg] line in its log). `kill -HUP`, not `nginx -s reload`, which writes to stderr.
set -eu

pid_file="${NGINX_PID_FILE:-/var/run/nginx.pid}"

# The certificate only: deploy/acme.py replaces the key first and the certificate last, so a new
# certificate means a complete pair (watching both could catch the new key beside the old
# certificate, which nginx refuses).
fingerprint() {
    cksum "$TLS_CERTIFICATE" 2>/dev/null || true
}

watch() {
    last="$(fingerprint)"
    while sleep "${TLS_WATCH_SECONDS:-60}"; do
        now="$(fingerprint)"
        [ "$now" = "$last" ] && continue
        last="$now"
        if kill -HUP "$(cat "$pid_file")"; then
            echo "reload-on-new-certificate: $TLS_CERTIFICATE changed: nginx reloads it"
        else
            echo "reload-on-new-certificate: ERROR $TLS_CERTIFICATE changed, but nginx (pid file $pid_file) did not take the signal"
        fi
    done
}

watch &
