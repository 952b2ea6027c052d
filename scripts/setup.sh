#!/bin/bash
# Idempotent host setup: a container engine that answers, compose v2, and the Python env.
# Installs only as root on Debian; otherwise says exactly what is missing and exits 2.
set -euo pipefail
cd "$(dirname "$0")/.."

die() { echo "chaoslab setup: $*" >&2; exit 2; }

if ! docker info >/dev/null 2>&1; then
    [ "$(id -u)" = 0 ] || die "no container engine answers 'docker info' and we are not root: start Docker (or run 'make setup' as root)"
    [ -f /etc/debian_version ] || die "no container engine answers 'docker info': install and start Docker (automatic install is only done on Debian)"
    if ! command -v dockerd >/dev/null 2>&1; then
        echo "installing docker.io ..."
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io >/dev/null \
            || die "apt-get install docker.io failed"
    fi
    echo "starting dockerd ..."
    setsid dockerd >/var/log/dockerd.log 2>&1 < /dev/null &
    for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
    docker info >/dev/null 2>&1 || die "dockerd did not answer within 60 s (see /var/log/dockerd.log)"
fi

if ! docker compose version >/dev/null 2>&1; then
    [ "$(id -u)" = 0 ] && [ -f /etc/debian_version ] || die "'docker compose' (v2) is missing: install the Compose v2 plugin"
    echo "installing compose v2 (docker-compose from Debian trixie) ..."
    tmp=$(mktemp -d)
    mkdir -p "$tmp/lists/partial"
    echo 'deb http://deb.debian.org/debian trixie main' > "$tmp/sources.list"
    apto=(-o Dir::Etc::SourceList="$tmp/sources.list" -o Dir::Etc::SourceParts=/dev/null -o Dir::State::Lists="$tmp/lists")
    apt-get "${apto[@]}" update -qq && (cd "$tmp" && apt-get "${apto[@]}" download docker-compose >/dev/null 2>&1) \
        || die "could not download docker-compose from Debian trixie"
    dpkg -i "$tmp"/docker-compose_*.deb >/dev/null || die "dpkg -i docker-compose failed"
    rm -rf "$tmp"
    docker compose version >/dev/null 2>&1 || die "'docker compose' still missing after install"
fi

command -v debootstrap >/dev/null 2>&1 || { [ "$(id -u)" = 0 ] && apt-get install -y -qq debootstrap >/dev/null; } \
    || die "debootstrap is missing (apt-get install debootstrap)"
command -v mvn >/dev/null 2>&1 || { [ "$(id -u)" = 0 ] && apt-get install -y -qq maven >/dev/null; } \
    || die "Maven is missing (apt-get install maven)"

# Prometheus, for tests/integration/test_live_metrics_prometheus.py only (it scrapes a run's live metrics;
# without the binary that one test is skipped, so a non-root setup only says so). Decided: the
# binary is taken out of Debian's own package (apt-get download + dpkg-deb), not `apt-get install
# prometheus`: that package's postinst starts a prometheus service on :9090 (and enables it where
# systemd runs), adds a user and pulls in node-exporter. The test runs the one binary with its own
# config, storage and port; nothing is started here and nothing is left running.
if ! command -v prometheus >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && [ -f /etc/debian_version ]; then
        echo "installing prometheus (the binary from Debian's package, no service) ..."
        tmp=$(mktemp -d)
        chmod 755 "$tmp"
        (cd "$tmp" && { apt-get download prometheus >/dev/null 2>&1 \
                        || { apt-get update -qq && apt-get download prometheus >/dev/null 2>&1; }; }) \
            || die "could not download Debian's prometheus package (apt-get download prometheus)"
        dpkg-deb --fsys-tarfile "$tmp"/prometheus_*.deb | tar -xO ./usr/bin/prometheus >/usr/local/bin/prometheus.new \
            && chmod 755 /usr/local/bin/prometheus.new && mv /usr/local/bin/prometheus.new /usr/local/bin/prometheus \
            || die "could not take the prometheus binary out of Debian's package"
        rm -rf "$tmp"
        prometheus --version >/dev/null 2>&1 || die "the prometheus binary taken from Debian's package does not run"
    else
        echo "chaoslab setup: prometheus is missing: tests/integration/test_live_metrics_prometheus.py will be skipped" \
             "(apt-get install prometheus, or 'make setup' as root on Debian)" >&2
    fi
fi

# The VM agent is Rust (agent/): cargo builds it on the host; its Pulsar client needs protoc.
command -v cargo >/dev/null 2>&1 || [ -x "$HOME/.cargo/bin/cargo" ] \
    || die "cargo (the Rust toolchain) is missing: install it with rustup (https://rustup.rs) or apt-get install cargo"
command -v protoc >/dev/null 2>&1 || { [ "$(id -u)" = 0 ] && apt-get install -y -qq protobuf-compiler >/dev/null; } \
    || die "protoc is missing (apt-get install protobuf-compiler): the agent's Pulsar client needs it to build"

if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv || die "python3 -m venv failed (apt-get install python3-venv)"
fi
# editable: the code is read from the tree; pip runs again only when pyproject.toml changed
stamp=.venv/.chaoslab-pyproject
want=$(sha256sum pyproject.toml | cut -c1-16)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ] || [ ! -x .venv/bin/chaoslab ]; then
    .venv/bin/pip install -q -e '.[test]' || die "pip install of the chaoslab package failed"
    echo "$want" > "$stamp"
fi
echo "setup ok: $(docker info --format 'engine {{.ServerVersion}}'), $(docker compose version --short | sed 's/^/compose /')"
