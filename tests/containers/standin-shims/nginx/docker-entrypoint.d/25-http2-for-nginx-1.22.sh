#!/bin/sh
# Stand-in only (tests/containers/images.py adds it to the nginx stand-in, never to a real image).
# The stand-in's nginx is Debian's 1.22, which has no `http2 on;` (nginx 1.25.1 added it; the
# nginx:1.27-alpine a bake names reads it). After the templates are rendered (20-envsubst...),
# rewrite it into the older form 1.22 reads, `listen ... ssl http2;` on the server's last listen
# line before it: the same rewrite harness/stack.py's http2_for makes for the native stack.
set -eu
for config in /etc/nginx/*.conf /etc/nginx/conf.d/*.conf; do
    [ -f "$config" ] && grep -q '^[[:space:]]*http2 on;' "$config" || continue
    awk '
        { line[NR] = $0 }
        /^[[:space:]]*listen / { listen = NR }
        /^[[:space:]]*http2 on;[[:space:]]*$/ { sub(/;/, " http2;", line[listen]); line[NR] = "" }
        END { for (i = 1; i <= NR; i++) print line[i] }
    ' "$config" > "$config.1.22" && mv "$config.1.22" "$config"
    echo "$0: $config: http2 on; -> listen ... http2; (nginx 1.22)"
done
