#!/usr/bin/env bash
# `make test-py313`: the README's quick start and the tests on Python 3.13, in a Debian 13 (trixie) root made with
# debootstrap, as a newcomer on Debian 13 runs them. Needs root (debootstrap, chroot, mount) and Debian's packages.
#
# The root is cached under the system temp folder (CARE_OUTCOMES_PY313_ROOT, default $TMPDIR/care-outcomes-debian13)
# with pip's download cache in it, so only the first run pays for debootstrap and the downloads. The project is
# copied in as git tracks it (the working tree's version of each tracked file), then `make run` and `make test` run
# there with PYTHON=python3.13. Chromium and PostgreSQL tests run on the main Python only: they skip there with
# that reason (CARE_OUTCOMES_SECONDARY_PYTHON=1).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
root="${CARE_OUTCOMES_PY313_ROOT:-${TMPDIR:-/tmp}/care-outcomes-debian13}"

if [ "$(id -u)" != 0 ]; then
  echo "make test-py313: needs root (debootstrap, chroot and mount)" >&2
  exit 2
fi
if ! command -v debootstrap >/dev/null 2>&1; then
  apt-get install -y -q --no-install-recommends debootstrap >/dev/null 2>&1 || {
    apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends debootstrap >/dev/null; }
fi

# the machine's own Debian mirror (its apt sources), else Debian's
mirror=$(sed -n 's/^URIs: *\([^ ]*\).*/\1/p' /etc/apt/sources.list.d/*.sources 2>/dev/null | grep -v security | head -1)
if [ -z "$mirror" ]; then
  mirror=$(sed -n 's/^deb \(\[[^]]*\] \)\{0,1\}\(http[^ ]*\) .*/\2/p' /etc/apt/sources.list 2>/dev/null | head -1)
fi
mirror=${mirror:-http://deb.debian.org/debian}

if [ ! -x "$root/usr/bin/python3.13" ] || [ ! -x "$root/usr/bin/make" ]; then
  echo "py313: making a Debian 13 root in $root (once; from $mirror)"
  rm -rf "$root.new"
  debootstrap --variant=minbase --include=python3,python3-venv,make,ca-certificates trixie "$root.new" "$mirror" \
    >"${TMPDIR:-/tmp}/care-outcomes-debootstrap.log" 2>&1 || {
    echo "py313: debootstrap failed, see ${TMPDIR:-/tmp}/care-outcomes-debootstrap.log" >&2
    exit 2
  }
  rm -rf "$root"
  mv "$root.new" "$root"
fi

# the network settings and certificate authorities of this machine (pip reaches the registry as the host does)
cp /etc/resolv.conf "$root/etc/resolv.conf"
cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"

# the project as git tracks it, into a fresh folder (its .venv and pip's cache stay between runs)
work="$root/work/care-outcomes"
mkdir -p "$work"
find "$work" -mindepth 1 -maxdepth 1 ! -name .venv -exec rm -rf {} +
git -C "$repo" ls-files -z | (cd "$repo" && xargs -0 tar -cf - --no-recursion) | tar -C "$work" -xf -

mounted=()
cleanup() {
  for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do umount -l "${mounted[$i]}" 2>/dev/null || true; done
}
trap cleanup EXIT
mount -t proc proc "$root/proc" && mounted+=("$root/proc")
mount --bind /dev "$root/dev" && mounted+=("$root/dev")
mkdir -p "$root/dev/shm"

chroot "$root" /usr/bin/env -i \
  PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  HOME=/root LANG=C.UTF-8 TMPDIR=/tmp \
  PIP_CERT=/etc/ssl/certs/ca-certificates.crt PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_DEFAULT_TIMEOUT=180 \
  CI="${CI:-}" CARE_OUTCOMES_SECONDARY_PYTHON=1 \
  bash -c 'cd /work/care-outcomes && python3.13 --version && make run PYTHON=python3.13 && make test PYTHON=python3.13'

# the marts published on 3.13 are the marts published here
python=${PYTHON_HOST:-.venv/bin/python}
here=$(mktemp -d "${TMPDIR:-/tmp}/care-outcomes-py311-XXXXXX")
CARE_OUTCOMES_CHROMIUM=off "$python" -m pipelines.cli refresh --warehouse "$here/care_outcomes.duckdb" >/dev/null
"$python" scripts/same_marts.py "$work/warehouse/care_outcomes.duckdb" "$here/care_outcomes.duckdb"
rm -rf "$here"
