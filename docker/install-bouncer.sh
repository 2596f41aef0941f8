#!/bin/sh
# install-bouncer.sh: install muninn-bouncer on this host, once, as root.
#
#   docker/install-bouncer.sh --server https://muninn.example:8443 [--ca-file ca.pem] \
#       [--binary bin/muninn-bouncer] < key-file        # or: echo "$KEY" | ...
#
# It installs the binary, the systemd unit (docker/muninn-bouncer.service, next to
# this script), /etc/muninn/bouncer.yaml and the key /etc/muninn/bouncer.key with the
# owners and modes README.md lists under "Files and permissions", then prints the
# next step. An existing key or config is kept unless a new key is given on stdin or
# --force is passed. DESTDIR=/some/root installs under that root instead (packaging,
# tests); then nothing is chowned unless this runs as root.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
server="" ca="" binary="" force=0
while [ $# -gt 0 ]; do
	case "$1" in
	--server) server=$2; shift 2 ;;
	--ca-file) ca=$2; shift 2 ;;
	--binary) binary=$2; shift 2 ;;
	--force) force=1; shift ;;
	-h|--help) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	*) echo "install-bouncer: unknown argument $1 (see --help)" >&2; exit 2 ;;
	esac
done
[ -n "$server" ] || { echo "install-bouncer: --server URL is required (see --help)" >&2; exit 2; }
case "$server" in http://*|https://*) ;; *) echo "install-bouncer: --server must be an http:// or https:// URL, not $server" >&2; exit 2 ;; esac
if [ -z "$binary" ]; then
	for b in "$here/../bin/muninn-bouncer" "$here/muninn-bouncer" "$(command -v muninn-bouncer || true)"; do
		if [ -n "$b" ] && [ -x "$b" ]; then binary=$b; break; fi
	done
fi
[ -n "$binary" ] && [ -x "$binary" ] || { echo "install-bouncer: no muninn-bouncer binary (make build, or --binary PATH)" >&2; exit 2; }
unit="$here/muninn-bouncer.service"
[ -f "$unit" ] || { echo "install-bouncer: $unit is missing" >&2; exit 2; }
root=${DESTDIR:-}
if [ -z "$root" ] && [ "$(id -u)" != 0 ]; then
	echo "install-bouncer: run as root (or set DESTDIR to stage the files)" >&2; exit 1
fi
own=""
[ "$(id -u)" = 0 ] && own="-o root -g root"

# The key: stdin when it is not a terminal, else MUNINN_BOUNCER_KEY.
key=""
if [ ! -t 0 ]; then key=$(tr -d ' \r\n\t' || true); fi
[ -n "$key" ] || key=${MUNINN_BOUNCER_KEY:-}
keyfile="$root/etc/muninn/bouncer.key"
if [ -z "$key" ] && [ ! -s "$keyfile" ]; then
	echo "install-bouncer: no bouncer key: pipe it on stdin (POST /api/v1/bouncers shows it once)" >&2; exit 2
fi

install -d -m 0755 $own "$root/usr/local/bin" "$root/etc/systemd/system" "$root/etc/muninn"
install -m 0755 $own "$binary" "$root/usr/local/bin/muninn-bouncer"
install -m 0644 $own "$unit" "$root/etc/systemd/system/muninn-bouncer.service"
if [ -n "$key" ]; then
	# Written under umask 077 so it is never readable by others, even for a moment.
	(umask 077; printf '%s\n' "$key" > "$keyfile.new")
	chmod 0600 "$keyfile.new"
	[ -z "$own" ] || chown root:root "$keyfile.new"
	mv -f "$keyfile.new" "$keyfile"
fi
cafile=""
if [ -n "$ca" ]; then
	install -m 0644 $own "$ca" "$root/etc/muninn/ca.pem"
	cafile=/etc/muninn/ca.pem
fi
config="$root/etc/muninn/bouncer.yaml"
if [ ! -e "$config" ] || [ "$force" = 1 ]; then
	{
		echo "# muninn-bouncer settings (README: The bouncer). The key is not here: the unit"
		echo "# passes /etc/muninn/bouncer.key to the bouncer as a systemd credential."
		echo "server: $server"
		[ -z "$cafile" ] || echo "ca_file: $cafile"
		echo "state_dir: /var/lib/muninn-bouncer"
	} > "$config.new"
	chmod 0644 "$config.new"
	[ -z "$own" ] || chown root:root "$config.new"
	mv -f "$config.new" "$config"
else
	echo "install-bouncer: keeping the existing $config (--force replaces it)"
fi

echo "Installed muninn-bouncer under ${root:-/}."
if [ -n "$root" ]; then
	echo "Next: copy that tree onto the host, then: systemctl daemon-reload && systemctl enable --now muninn-bouncer"
else
	echo "Next: systemctl daemon-reload && systemctl enable --now muninn-bouncer"
fi
echo "Then check: journalctl -u muninn-bouncer; nft list table inet muninn; GET /api/v1/bouncers on the server."
