#!/usr/bin/env bash
# Installs the servers and tools the test suite runs for real: PostgreSQL 15 (server + client tools),
# repmgr and Pgpool-II for the postgresql-ha rehearsal, pgcopydb for the benchmarks, unzip for the
# helm binary shipped inside an npm package. Idempotent; needs root (CI runs as root) or sudo.
set -euo pipefail
packages=(postgresql-15 postgresql-client-15 postgresql-contrib postgresql-15-repmgr pgpool2 pgcopydb unzip)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "setup-test-machine: all of ${packages[*]} already installed"
  exit 0
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
# Debian starts a cluster on install; the tests start their own servers on free ports instead.
$SUDO pg_ctlcluster 15 main stop 2>/dev/null || true
