#!/bin/sh
# One RabbitMQ node of the lab (Debian's rabbitmq-server).
#   RABBITMQ_COOKIE   the Erlang cookie every node of one cluster shares
#   RABBITMQ_PLUGINS  comma-separated plugins to enable (e.g. rabbitmq_management)
#   RABBITMQ_JOIN     rabbit@<seed>: once started, join the seed's cluster the way an operator
#                     adds a node (stop_app, join_cluster, start_app); skipped when already a member
# The node counts as ready (healthcheck) once /run/chaoslab-ready exists.
set -eu
rm -f /run/chaoslab-ready
if [ -n "${RABBITMQ_COOKIE:-}" ]; then
    umask 077
    printf '%s' "$RABBITMQ_COOKIE" > /var/lib/rabbitmq/.erlang.cookie
    chown rabbitmq:rabbitmq /var/lib/rabbitmq/.erlang.cookie
    chmod 400 /var/lib/rabbitmq/.erlang.cookie
    umask 022
fi
printf '[%s].\n' "${RABBITMQ_PLUGINS:-}" > /etc/rabbitmq/enabled_plugins

rabbitmq-server &
server=$!
# rabbitmq-server run as a child ignores SIGTERM through its wrappers: stop it the supported way
trap 'rabbitmqctl -q stop >/dev/null 2>&1 || kill -TERM $server; wait $server; exit 0' TERM INT

tries=0
until rabbitmqctl -q await_startup --timeout 30 >/dev/null 2>&1; do
    kill -0 $server 2>/dev/null || { echo "chaoslab: rabbitmq-server exited during start" >&2; wait $server; exit 1; }
    tries=$((tries + 1))
    [ $tries -lt 60 ] || { echo "chaoslab: rabbitmq did not start" >&2; exit 1; }
    sleep 1
done
if [ -n "${RABBITMQ_JOIN:-}" ]; then
    if rabbitmqctl -q cluster_status --formatter json | grep -q "\"$RABBITMQ_JOIN\""; then
        echo "chaoslab: already a member of $RABBITMQ_JOIN's cluster"
    else
        echo "chaoslab: joining $RABBITMQ_JOIN"
        rabbitmqctl -q stop_app
        rabbitmqctl -q join_cluster "$RABBITMQ_JOIN"
        rabbitmqctl -q start_app
    fi
fi
touch /run/chaoslab-ready
echo "chaoslab: node ready"
wait $server
