#!/usr/bin/env bash
# Installs CRIU >= 4 for the checkpoint adapter (host-agent/checkpoint/criu.ts). Idempotent; a
# run stopped half-way is finished by the next one (<prefix>/.installed is written last).
#
# 1. A system criu whose major version is >= 4 (Debian 13, Ubuntu 24.04): nothing to do.
# 2. Otherwise (Debian 12 ships 3.17, which fails on recent kernels with a vdso error) CRIU and
#    its shared libraries are taken from Debian trixie and unpacked into a private prefix
#    (default /opt/shardform/criu). They are never installed into the system: trixie's libc
#    would replace the host's. criu.ts runs the binary through the prefix's own loader:
#      <prefix>/usr/lib64/ld-linux-x86-64.so.2 --library-path <prefix libs> <prefix>/usr/sbin/criu
#    The trixie index lives in a private apt directory (<prefix>/.apt), not in the system's
#    sources, so the host's apt never sees trixie.
#
# Environment: SHARDFORM_CRIU_PREFIX (default /opt/shardform/criu),
#              SHARDFORM_CRIU_SUITE (default trixie), SHARDFORM_CRIU_FORCE=1 to reinstall.
set -euo pipefail

prefix="${SHARDFORM_CRIU_PREFIX:-/opt/shardform/criu}"
suite="${SHARDFORM_CRIU_SUITE:-trixie}"
mirror="${SHARDFORM_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
arch="$(dpkg --print-architecture 2>/dev/null || echo amd64)"

log() { echo "install-criu: $*" >&2; }

major_of() { # "Version: 4.1.1" or "4.1" -> 4
  sed -n 's/^[^0-9]*\([0-9][0-9]*\)\..*/\1/p' | head -n1
}

# One run at a time per prefix (two CI jobs on one machine): they would share the staging tree and
# the private apt directory, and one swapped its tree in while the other was moving it. The lock is
# on the prefix directory itself, so it leaves no file behind; the second run then finds it installed.
command -v flock >/dev/null || { log "needs flock (util-linux)"; exit 1; }
mkdir -p "$prefix"
exec 9<"$prefix"
flock 9

if [ "${SHARDFORM_CRIU_FORCE:-0}" != 1 ]; then
  if command -v criu >/dev/null 2>&1; then
    major="$(criu --version 2>/dev/null | major_of || true)"
    if [ -n "$major" ] && [ "$major" -ge 4 ]; then
      log "system criu $(criu --version | head -n1) is recent enough; nothing to install"
      exit 0
    fi
  fi
  if [ -x "$prefix/usr/sbin/criu" ] && [ -f "$prefix/.installed" ]; then
    # The marker holds the installed `criu --version`: a CRIU older than 4 (from a suite that still
    # had 3.x) is replaced, not kept for good as "installed" while criu.ts refuses it.
    major="$(major_of <"$prefix/.installed" || true)"
    if [ -n "$major" ] && [ "$major" -ge 4 ]; then
      log "private criu already installed in $prefix"
      exit 0
    fi
    log "private criu in $prefix is $(head -n1 "$prefix/.installed"), older than 4; reinstalling"
  fi
fi

case "$arch" in
  amd64) loader_name=ld-linux-x86-64.so.2; triplet=x86_64-linux-gnu ;;
  arm64) loader_name=ld-linux-aarch64.so.1; triplet=aarch64-linux-gnu ;;
  *) log "unsupported architecture $arch"; exit 1 ;;
esac

command -v apt-get >/dev/null || { log "needs apt-get (Debian or Ubuntu)"; exit 1; }
command -v dpkg-deb >/dev/null || { log "needs dpkg-deb"; exit 1; }

aptdir="$prefix/.apt"
mkdir -p "$aptdir/state/lists/partial" "$aptdir/cache/archives/partial" "$aptdir/sources.list.d" "$aptdir/preferences.d" "$aptdir/debs"
: >"$aptdir/state/status" # an empty dpkg status: resolve the full dependency closure for the prefix
keyring=/usr/share/keyrings/debian-archive-keyring.gpg
[ -f "/usr/share/keyrings/debian-archive-$suite-stable.gpg" ] && keyring="/usr/share/keyrings/debian-archive-$suite-stable.gpg"
echo "deb [arch=$arch signed-by=$keyring] $mirror $suite main" >"$aptdir/sources.list"

apt_private=(
  -o "Dir::Etc::SourceList=$aptdir/sources.list"
  -o "Dir::Etc::SourceParts=$aptdir/sources.list.d"
  -o "Dir::Etc::Preferences=$aptdir/preferences"
  -o "Dir::Etc::PreferencesParts=$aptdir/preferences.d"
  -o "Dir::State=$aptdir/state"
  -o "Dir::State::Lists=$aptdir/state/lists"
  -o "Dir::State::status=$aptdir/state/status"
  -o "Dir::Cache=$aptdir/cache"
  -o "APT::Architecture=$arch"
  -o "APT::Architectures=$arch"
  -o "Acquire::Languages=none"
  -o "Debug::NoLocking=1"
  -o "APT::Sandbox::User=root"
)

log "reading the $suite index into $aptdir"
apt-get "${apt_private[@]}" update -qq

# criu plus the shared libraries it needs, transitively. Only lib* packages (and criu) go into
# the prefix: the rest of the closure (debconf, perl, python for crit) is not needed to run it.
mapfile -t closure < <(
  apt-cache "${apt_private[@]}" depends --recurse --no-recommends --no-suggests --no-conflicts \
    --no-breaks --no-replaces --no-enhances --no-pre-depends criu 2>/dev/null |
    sed -n 's/^\([a-z0-9][a-z0-9.+-]*\)$/\1/p' | sort -u
)
pkgs=(criu)
for p in "${closure[@]}"; do
  case "$p" in lib*) pkgs+=("$p") ;; esac
done
# libc6's loader is what runs criu; make sure it is there even if the closure named it oddly
printf '%s\n' "${pkgs[@]}" | grep -qx libc6 || pkgs+=(libc6)
log "downloading ${#pkgs[@]} packages: ${pkgs[*]}"

staging="$prefix.staging"
rm -rf "$staging"
mkdir -p "$staging"
(cd "$aptdir/debs" && rm -f ./*.deb && apt-get "${apt_private[@]}" download -qq "${pkgs[@]}")
for deb in "$aptdir"/debs/*.deb; do
  dpkg-deb -x "$deb" "$staging"
done
[ -x "$staging/usr/sbin/criu" ] || { log "criu binary missing after unpacking"; exit 1; }
# trixie has merged /usr: the loader is usr/lib64 (amd64) or usr/lib (arm64), not /lib64.
loader=
for candidate in usr/lib64 lib64 usr/lib/$triplet usr/lib lib; do
  if [ -e "$staging/$candidate/$loader_name" ]; then loader="$candidate/$loader_name"; break; fi
done
[ -n "$loader" ] || { log "loader $loader_name missing after unpacking"; exit 1; }

libs="$staging/lib/$triplet:$staging/usr/lib/$triplet:$staging/lib:$staging/usr/lib"
version="$("$staging/$loader" --library-path "$libs" "$staging/usr/sbin/criu" --version | head -n1)"
log "unpacked $version"
major="$(printf '%s\n' "$version" | major_of)"
if [ -z "$major" ] || [ "$major" -lt 4 ]; then
  log "$suite's criu is ${version#Version: }, not CRIU >= 4 (criu.ts would refuse it); set SHARDFORM_CRIU_SUITE to a suite that has it"
  rm -rf "$staging"
  exit 1
fi

# Swap the staged tree in, keeping the private apt directory. The marker goes first and comes
# back last: a run stopped in between (an old tree half removed, a new one half moved in) leaves a
# prefix that neither this script nor criu.ts takes for an installed CRIU.
mkdir -p "$prefix"
rm -f "$prefix/.installed"
for entry in "$staging"/*; do
  name="$(basename "$entry")"
  rm -rf "${prefix:?}/$name"
  mv "$entry" "$prefix/$name"
done
rmdir "$staging"
rm -f "$aptdir"/debs/*.deb
printf '%s\n' "$version" >"$prefix/.installed"
log "installed into $prefix (run through $prefix/$loader)"
