#!/usr/bin/env bash
# Installs and starts what Assist TEE needs on a Debian host, idempotently and fast when
# everything is already there: Docker engine with the runsc runtimes, PostgreSQL, NATS with
# JetStream, and the database role. Runs as root (CI and the README's start command do).
set -euo pipefail

log() { printf 'bootstrap: %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
[ "$(id -u)" = 0 ] || die "run as root (it installs packages and starts daemons)"

DB_USER=${TEE_BOOTSTRAP_DB_USER:-assist_tee}
DB_PASSWORD=${TEE_BOOTSTRAP_DB_PASSWORD:-assist_tee}
DB_NAME=${TEE_BOOTSTRAP_DB_NAME:-assist_tee}
has_systemd() { [ -d /run/systemd/system ]; }
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
wait_for() { # wait_for SECONDS DESCRIPTION COMMAND...
  local deadline=$((SECONDS + $1)) what=$2; shift 2
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt $deadline ] || die "$what did not come up in time"
    sleep 0.5
  done
}

install_missing() {
  local missing=()
  command -v dockerd >/dev/null || missing+=(docker.io)
  command -v runsc >/dev/null || missing+=(runsc)
  command -v pg_ctlcluster >/dev/null || missing+=(postgresql)
  command -v nats-server >/dev/null || missing+=(nats-server)
  # The services' host firewall (nftables table assist_tee); Docker brings its own iptables.
  command -v nft >/dev/null || missing+=(nftables)
  # Only the test suite uses it: it validates docker-compose.yml (no image can be pulled here).
  command -v docker-compose >/dev/null || missing+=(docker-compose)
  command -v jq >/dev/null || missing+=(jq)
  command -v curl >/dev/null || missing+=(curl)
  [ ${#missing[@]} -eq 0 ] && return
  log "installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# runsc needs an explicit --network here (docs/host-facts.md): "none" for sandboxes, "host" for the
# ones that get the container's own network namespace (setup installs, allow-listed egress).
configure_docker_runtimes() {
  local file=/etc/docker/daemon.json
  mkdir -p /etc/docker
  local merged
  merged=$(node -e '
    const fs = require("node:fs");
    const [file, runsc] = process.argv.slice(1);
    let config = {};
    try { config = JSON.parse(fs.readFileSync(file, "utf8")); } catch {}
    config.runtimes = {
      ...config.runtimes,
      runsc: { path: runsc, runtimeArgs: ["--network=none"] },
      "runsc-net": { path: runsc, runtimeArgs: ["--network=host"] },
    };
    process.stdout.write(JSON.stringify(config, null, 2) + "\n");
  ' "$file" "$(command -v runsc)")
  if [ ! -f "$file" ] || [ "$merged" != "$(cat "$file")" ]; then
    log "writing runsc runtimes to $file"
    printf '%s\n' "$merged" > "$file"
    pkill -HUP -x dockerd 2>/dev/null || true
  fi
}

start_docker() {
  if ! docker info >/dev/null 2>&1; then
    log "starting dockerd"
    if has_systemd; then systemctl start docker
    else setsid dockerd >/var/log/dockerd.log 2>&1 < /dev/null & fi
    wait_for 60 "dockerd (see /var/log/dockerd.log)" docker info
  fi
  wait_for 10 "the runsc runtime in dockerd" sh -c 'docker info --format "{{json .Runtimes}}" | grep -q runsc-net'
}

start_postgres() {
  if ! port_open 5432; then
    local version
    version=$(ls /etc/postgresql 2>/dev/null | sort -V | tail -n 1)
    [ -n "$version" ] || die "PostgreSQL is installed but has no cluster in /etc/postgresql"
    log "starting PostgreSQL $version"
    if has_systemd; then systemctl start postgresql
    else pg_ctlcluster --skip-systemctl-redirect "$version" main start; fi
    wait_for 30 "PostgreSQL" port_open 5432
  fi
  # The role may create databases: each test suite gets its own.
  su postgres -c "psql -v ON_ERROR_STOP=1 -qtA" >/dev/null <<SQL
DO \$\$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$DB_USER') THEN
    CREATE ROLE "$DB_USER" LOGIN CREATEDB PASSWORD '$DB_PASSWORD';
  END IF;
END \$\$;
SELECT 'CREATE DATABASE "$DB_NAME" OWNER "$DB_USER"'
  WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = '$DB_NAME')\gexec
SQL
}

start_nats() {
  if ! port_open 4222; then
    log "starting NATS with JetStream"
    mkdir -p /var/lib/nats-server
    start-stop-daemon --start --oknodo --background --exec "$(command -v nats-server)" -- \
      -a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server -l /var/log/nats-server.log
    wait_for 30 "NATS" port_open 4222
  fi
}

install_missing
configure_docker_runtimes
start_docker
start_postgres
start_nats
log "ready: docker (runsc), postgres, nats"
