#!/usr/bin/env bash
# Installs what loopctl's database needs on Debian 12/13, idempotently, as root:
# the PostgreSQL server, plpython3u, pgvector, pgTAP and sqitch.
# pgvector: the packaged postgresql-$V-pgvector where apt has it; otherwise it is built
# from Debian's own `pgvector` source package (trixie) with a private apt sources list,
# so the system's apt configuration is left untouched.
set -euo pipefail

say() { printf 'provision-db: %s\n' "$*" >&2; }

if [ ! -r /etc/debian_version ] || ! command -v apt-get >/dev/null 2>&1; then
  cat >&2 <<'MSG'
provision-db: this script supports Debian 12 and 13 only.
On other systems install: PostgreSQL 15+ server, its plpython3u package, pgvector >= 0.7,
pgTAP (optional, for SQL tests) and sqitch (with DBD::Pg); or run `docker compose up`.
MSG
  exit 2
fi
if [ "$(id -u)" != 0 ]; then say "run as root (it installs system packages)"; exit 2; fi

export DEBIAN_FRONTEND=noninteractive
apt_install() { apt-get install -y -qq --no-install-recommends "$@" >/dev/null; }

# Which PostgreSQL major version this Debian ships by default (15 on bookworm, 17 on trixie).
pg_major() {
  if [ -n "${LOOPCTL_PG_VERSION:-}" ]; then echo "$LOOPCTL_PG_VERSION"; return; fi
  local v
  v=$(ls /usr/lib/postgresql 2>/dev/null | sort -n | tail -n 1 || true)
  if [ -z "$v" ]; then
    v=$(apt-cache depends postgresql 2>/dev/null | sed -n 's/.*Depends: postgresql-\([0-9][0-9]*\)$/\1/p' | head -n 1)
  fi
  echo "$v"
}

have_pkgs() { for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || return 1; done; }

V=$(pg_major)
if [ -z "$V" ]; then apt-get update -qq; V=$(pg_major); fi
[ -n "$V" ] || { say "cannot tell which PostgreSQL version to install"; exit 2; }

PKGS=(postgresql-"$V" postgresql-client-"$V" postgresql-contrib postgresql-plpython3-"$V"
      postgresql-server-dev-"$V" postgresql-"$V"-pgtap sqitch libdbd-pg-perl
      build-essential dpkg-dev ca-certificates)
if ! have_pkgs "${PKGS[@]}"; then
  say "installing PostgreSQL $V, plpython3u, pgTAP, sqitch"
  apt-get update -qq
  apt_install "${PKGS[@]}"
fi

PG_CONFIG=/usr/lib/postgresql/$V/bin/pg_config
if [ -f "$($PG_CONFIG --sharedir)/extension/vector.control" ]; then
  say "pgvector already installed for PostgreSQL $V"
elif apt-cache show "postgresql-$V-pgvector" >/dev/null 2>&1; then
  say "installing packaged postgresql-$V-pgvector"
  apt_install "postgresql-$V-pgvector"
else
  say "building pgvector from Debian's source package (trixie) for PostgreSQL $V"
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  mkdir -p "$work/lists/partial" "$work/sources.list.d"
  echo "deb-src http://deb.debian.org/debian trixie main" > "$work/sources.list"
  # Private sources list and list cache: the system's apt configuration stays as it is.
  chmod 755 "$work"
  opts=(-o "APT::Sandbox::User=root" -o "Dir::Etc::sourcelist=$work/sources.list" -o "Dir::Etc::sourceparts=$work/sources.list.d"
        -o "Dir::State::Lists=$work/lists" -o "APT::Get::List-Cleanup=0")
  apt-get "${opts[@]}" update -qq
  (cd "$work" && apt-get "${opts[@]}" source -qq --download-only pgvector >/dev/null \
     && dpkg-source -x --no-check ./*.dsc src >/dev/null)
  make -s -C "$work/src" PG_CONFIG="$PG_CONFIG" >/dev/null
  make -s -C "$work/src" PG_CONFIG="$PG_CONFIG" install >/dev/null
fi
[ -f "$($PG_CONFIG --sharedir)/extension/vector.control" ] || { say "pgvector install failed"; exit 1; }
say "ok: PostgreSQL $V with plpython3u, pgvector, pgTAP and sqitch"
