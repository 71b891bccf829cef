#!/bin/sh
# laneq's container entrypoint (deploy/README.md, "Container"): writes the
# config of one node of a StatefulSet and runs `laneq node` in its place, so
# that the node is the container's main process and gets its SIGTERM.
#
#   laneq-entrypoint                     the node, configured from the environment
#   laneq-entrypoint --log-format json   the same, with more `laneq node` flags
#   laneq-entrypoint laneq queue list    any other command, run as it is
#
# The node's id comes from the pod's ordinal (laneq-0 is node 1, laneq-1 is
# node 2, ...): a pod keeps its ordinal, and so its volume, across restarts
# and rescheduling, and the data dir refuses to serve another id. Peers are
# addressed by their stable DNS names under the headless Service, which
# resolve before the pods are ready (publishNotReadyAddresses). Each input
# has a variable, so that the script also runs outside Kubernetes
# (scripts/check-deploy runs three of them on 127.0.0.1):
#
#   LANEQ_HOSTNAME        <statefulset>-<ordinal> ($HOSTNAME, else `uname -n`)
#   LANEQ_NAMESPACE       the pod's namespace (else the service account's
#                         namespace file)
#   LANEQ_PEER_SERVICE    the peers' headless Service (laneq-peers)
#   LANEQ_CLUSTER_DOMAIN  the cluster's DNS domain (cluster.local)
#   LANEQ_REPLICAS        the initial voters: nodes 1 to N (3)
#   LANEQ_PORT            the port for clients and peers (7101)
#   LANEQ_LISTEN_HOST     the address to bind (0.0.0.0)
#   LANEQ_PEERS           "1=HOST:PORT,2=HOST:PORT,...", instead of the DNS
#                         names; this node's own entry gives its port and the
#                         address it advertises
#   LANEQ_CLUSTER_NAME    the config's `cluster` (laneq)
#   LANEQ_TLS_DIR         node-ID.pem, node-ID.key, cluster-ca.pem and, if
#                         present, client-ca.pem (/etc/laneq/tls)
#   LANEQ_INSECURE        1: plaintext and no authentication, no TLS files
#   LANEQ_DATA_DIR        the node's data dir (/var/lib/laneq)
#   LANEQ_EXTRA_CONFIG    a TOML file of further settings (shutdown_drain_ms,
#                         [raft], [workers], ...), used if it exists
#                         (/etc/laneq/extra.toml); set, it must exist
#   LANEQ_NODE_CONFIG     where the config is written (/run/laneq/node.toml)
#   LANEQ_BIN             the laneq binary (laneq, from PATH)
#   LANEQ_PRINT_CONFIG    1: print the config and exit; nothing is written
set -eu

die() {
    printf 'laneq-entrypoint: %s\n' "$*" >&2
    exit 1
}

case ${1:-} in
"" | -*) ;;
*) exec "$@" ;;
esac

# A TOML basic string: backslashes and quotes escaped.
toml_str() {
    printf '"%s"' "$(printf '%s' "$1" | sed 's/[\\"]/\\&/g')"
}

# true for 1/true/yes, false for empty/0/false/no; anything else is refused.
flag() {
    case $2 in
    1 | true | yes) return 0 ;;
    "" | 0 | false | no) return 1 ;;
    *) die "$1=$2: use 1 or 0" ;;
    esac
}

number() {
    case $2 in
    "" | *[!0-9]* | 0[0-9]*) die "$1=$2 is not a number" ;;
    esac
}

# Container runtimes put HOSTNAME in the environment; sh does not set it.
# shellcheck disable=SC3028
host=${LANEQ_HOSTNAME:-${HOSTNAME:-$(uname -n)}}
ordinal=${host##*-}
statefulset=${host%-*}
case $ordinal in
"" | *[!0-9]* | 0[0-9]*) ordinal="" ;;
esac
if [ -z "$ordinal" ] || [ "$statefulset" = "$host" ]; then
    die "host name $host is not <statefulset>-<ordinal> (laneq-0): the node id comes from the ordinal; set LANEQ_HOSTNAME"
fi
id=$((ordinal + 1))

replicas=${LANEQ_REPLICAS:-3}
number LANEQ_REPLICAS "$replicas"
port=${LANEQ_PORT:-7101}
case $port in
tcp://*) die "LANEQ_PORT=$port comes from a Service named laneq through service links: set enableServiceLinks: false in the pod" ;;
esac
number LANEQ_PORT "$port"
listen_host=${LANEQ_LISTEN_HOST:-0.0.0.0}
cluster=${LANEQ_CLUSTER_NAME:-laneq}
data_dir=${LANEQ_DATA_DIR:-/var/lib/laneq}
tls_dir=${LANEQ_TLS_DIR:-/etc/laneq/tls}
config=${LANEQ_NODE_CONFIG:-/run/laneq/node.toml}
extra=${LANEQ_EXTRA_CONFIG:-/etc/laneq/extra.toml}
if [ -n "${LANEQ_EXTRA_CONFIG:-}" ] && [ ! -r "$extra" ]; then
    die "LANEQ_EXTRA_CONFIG=$extra cannot be read"
fi
insecure=false
if flag LANEQ_INSECURE "${LANEQ_INSECURE:-}"; then insecure=true; fi

# The peer list, one "ID ADDR" a line, and this node's advertised address.
peers=""
advertise=""
if [ -n "${LANEQ_PEERS:-}" ]; then
    set -f
    old_ifs=$IFS
    IFS=,
    for entry in $LANEQ_PEERS; do
        peer_id=${entry%%=*}
        addr=${entry#*=}
        number "node id in LANEQ_PEERS" "$peer_id"
        case $addr in
        *?:*[0-9]) ;;
        *) die "LANEQ_PEERS: $entry is not ID=HOST:PORT" ;;
        esac
        peers="$peers$peer_id $addr
"
        if [ "$peer_id" = "$id" ]; then
            advertise=$addr
            port=${addr##*:}
        fi
    done
    IFS=$old_ifs
    set +f
    [ -n "$advertise" ] || die "LANEQ_PEERS has no entry for this node ($id, from $host)"
else
    namespace=${LANEQ_NAMESPACE:-}
    sa_namespace=/var/run/secrets/kubernetes.io/serviceaccount/namespace
    if [ -z "$namespace" ] && [ -r "$sa_namespace" ]; then
        namespace=$(cat "$sa_namespace")
    fi
    [ -n "$namespace" ] || die "no namespace: set LANEQ_NAMESPACE (the downward API's metadata.namespace)"
    suffix="${LANEQ_PEER_SERVICE:-laneq-peers}.$namespace.svc.${LANEQ_CLUSTER_DOMAIN:-cluster.local}"
    # A node added later (an ordinal past the initial replicas) must still
    # find itself in its peer list; only `cluster init` reads the rest.
    last=$replicas
    [ "$id" -le "$last" ] || last=$id
    i=1
    while [ "$i" -le "$last" ]; do
        peers="$peers$i $statefulset-$((i - 1)).$suffix:$port
"
        i=$((i + 1))
    done
    advertise="$host.$suffix:$port"
fi

if ! $insecure; then
    for file in "node-$id.pem" "node-$id.key" cluster-ca.pem; do
        [ -r "$tls_dir/$file" ] || die "$tls_dir/$file is missing or unreadable: node $id needs node-$id.pem, node-$id.key and cluster-ca.pem there (deploy/README.md, \"Certificates\"), or LANEQ_INSECURE=1"
    done
fi

write_config() {
    printf '# Written by laneq-entrypoint for %s (node %s) at each start: edit the\n' "$host" "$id"
    printf '# environment or LANEQ_EXTRA_CONFIG instead.\n'
    printf 'id = %s\n' "$id"
    printf 'cluster = %s\n' "$(toml_str "$cluster")"
    printf 'listen = %s\n' "$(toml_str "$listen_host:$port")"
    printf 'advertise = %s\n' "$(toml_str "$advertise")"
    printf 'data_dir = %s\n' "$(toml_str "$data_dir")"
    if $insecure; then printf 'insecure = true\n'; fi
    # Top-level keys of the extra file must come before any table of ours.
    if [ -r "$extra" ]; then
        printf '\n# From %s\n' "$extra"
        cat "$extra"
        printf '\n'
    fi
    printf '%s' "$peers" | while read -r peer_id addr; do
        printf '\n[[peers]]\nid = %s\naddr = %s\n' "$peer_id" "$(toml_str "$addr")"
    done
    if ! $insecure; then
        printf '\n[tls]\n'
        printf 'cert = %s\n' "$(toml_str "$tls_dir/node-$id.pem")"
        printf 'key = %s\n' "$(toml_str "$tls_dir/node-$id.key")"
        printf 'peer_ca = %s\n' "$(toml_str "$tls_dir/cluster-ca.pem")"
        if [ -r "$tls_dir/client-ca.pem" ]; then
            printf 'client_ca = %s\n' "$(toml_str "$tls_dir/client-ca.pem")"
        fi
    fi
}

if flag LANEQ_PRINT_CONFIG "${LANEQ_PRINT_CONFIG:-}"; then
    write_config
    exit 0
fi

mkdir -p "$(dirname "$config")" "$data_dir"
write_config >"$config.tmp"
mv "$config.tmp" "$config"
printf 'laneq-entrypoint: node %s (%s), advertised as %s, config %s\n' \
    "$id" "$host" "$advertise" "$config" >&2
exec "${LANEQ_BIN:-laneq}" node --config "$config" "$@"
