#!/usr/bin/env bash
# scripts/kernels.sh [NAME...] — build, once, what `make test-kernels` boots under
# qemu: for every kernel of test/kernels/kernels.txt (or only the NAMEs given) a
# directory ${PERISCOPE_CACHE:-$HOME/.cache/periscope}/kernels/<name>-<key>/ with
#
#   vmlinuz     the kernel, from the Debian package (apt-get download + dpkg-deb -x:
#               nothing is installed on this machine, its own boot is untouched)
#   initrd.img  busybox and the modules that mount the root (virtio, ext4)
#   root.img    ext4: a Debian root file system made by debootstrap (minbase and
#               the test's programs) plus the kernel's modules
#   package     "PACKAGE VERSION" of the kernel
#   release     its release (uname -r)
#
# and prints "NAME DIR" per kernel on stdout (logs go to stderr). Each directory is
# keyed by a hash of its table line, the package list and LAYOUT below, so changing
# any of them makes a new one; it is built in NAME.tmp and renamed at the end, and a
# lock serialises concurrent callers. The debootstrap root is shared by all kernels.
# Needs root (debootstrap), debootstrap, kmod (depmod, modprobe), cpio, e2fsprogs.
set -euo pipefail
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TABLE="$REPO/test/kernels/kernels.txt"
CACHE="${PERISCOPE_CACHE:-$HOME/.cache/periscope}/kernels"

# Bump when what goes into the root file system changes (ROOTFS_LAYOUT) or into
# a kernel's images (LAYOUT: the initrd, the module set).
ROOTFS_LAYOUT=1
LAYOUT=3
# The Debian release of the root file system; its packages: nginx and curl (the
# HTTPS span, OpenSSL 3.0), nftables (packet loss), iproute2 (ip, ss), kmod
# (modprobe for nftables), bpftool (what is left attached after the agent).
RELEASE=bookworm
ROOTFS_PACKAGES=nginx,curl,nftables,iproute2,kmod,bpftool
# Module directories copied into the root (the rest of drivers/ and sound/ are
# of no use in a virtio guest) and the modules the initrd loads to mount it.
MODULE_DIRS=(arch block crypto fs lib mm net virt drivers/block drivers/char drivers/virtio)
BOOT_MODULES=(virtio_pci virtio_blk ext4 crc32c_generic)
# Upper bounds: a hung download or debootstrap must fail, not eat CI's time.
DEBOOTSTRAP_TIMEOUT=900
APT_TIMEOUT=600

log() { printf 'kernels.sh: %s\n' "$*" >&2; }
die() {
	log "ERROR: $*"
	exit 1
}

[ "$(id -u)" -eq 0 ] || die "must run as root (debootstrap): run 'sudo make test-kernels'"
for tool in debootstrap dpkg-deb depmod modprobe cpio mkfs.ext4 flock sha256sum gzip; do
	command -v "$tool" >/dev/null 2>&1 || die "$tool not found: run scripts/deps.sh"
done
[ -f "$TABLE" ] || die "no kernel table at $TABLE"
mkdir -p "$CACHE"

# mirror LABEL: the URI of the Debian archive ("Debian", "Debian-Security") that
# this machine's apt uses for $RELEASE.
mirror() {
	local uri
	uri=$(apt-get indextargets --format '$(REPO_URI)' 'Created-By: Packages' "Label: $1" 2>/dev/null |
		grep -m1 . || true)
	[ -n "$uri" ] || die "no $1 archive in this machine's apt sources (/etc/apt/sources.list*)"
	printf '%s\n' "${uri%/}"
}

# An apt of our own (sources, lists and cache under $CACHE/apt) with every suite of
# $RELEASE, backports included, on this machine's mirrors: resolving and downloading
# kernels touches nothing of the system's apt.
APTDIR="$CACHE/apt"
APT=(apt-get -q -o "Dir::Etc::SourceList=$APTDIR/sources.list" -o "Dir::Etc::SourceParts=$APTDIR/sources.list.d"
	-o "Dir::State::Lists=$APTDIR/lists" -o "Dir::Cache=$APTDIR/cache" -o Debug::NoLocking=1
	-o APT::Sandbox::User=root)
apt_ready=
private_apt() {
	[ -z "$apt_ready" ] || return 0
	local debian security keyring=/usr/share/keyrings/debian-archive-keyring.gpg
	debian=$(mirror Debian)
	security=$(mirror Debian-Security)
	mkdir -p "$APTDIR/sources.list.d" "$APTDIR/lists/partial" "$APTDIR/cache/archives/partial"
	cat >"$APTDIR/sources.list" <<-EOF
		deb [signed-by=$keyring] $debian $RELEASE main
		deb [signed-by=$keyring] $debian $RELEASE-updates main
		deb [signed-by=$keyring] $debian $RELEASE-backports main
		deb [signed-by=$keyring] $security $RELEASE-security main
	EOF
	log "apt-get update ($debian, $security)"
	timeout "$APT_TIMEOUT" "${APT[@]}" update >&2 || die "apt-get update of $APTDIR failed"
	apt_ready=1
}

# download DIR PACKAGE/SUITE: fetch one .deb into DIR and print its path.
download() {
	local dir=$1 spec=$2
	(cd "$dir" && timeout "$APT_TIMEOUT" "${APT[@]}" download "$spec" >&2) || die "apt-get download $spec failed"
	ls -t "$dir"/"${spec%%/*}"_*.deb | head -1
}

key() { printf '%s\n' "$@" | sha256sum | cut -c1-12; }

# rootfs: the debootstrap root shared by all kernels; prints its directory.
rootfs() {
	local dir
	dir="$CACHE/rootfs-$RELEASE-$(key "$ROOTFS_LAYOUT" "$RELEASE" "$ROOTFS_PACKAGES")"
	if [ ! -f "$dir/done" ]; then
		local tmp=$dir.tmp start=$SECONDS
		rm -rf "$tmp"
		mkdir -p "$tmp"
		log "debootstrap $RELEASE ($ROOTFS_PACKAGES) into $tmp"
		# debootstrap replaces start-stop-daemon with a fake while it installs:
		# no service (nginx) starts on this machine.
		timeout "$DEBOOTSTRAP_TIMEOUT" debootstrap --variant=minbase --include="$ROOTFS_PACKAGES" \
			"$RELEASE" "$tmp/root" "$(mirror Debian)" >&2 ||
			die "debootstrap failed (log: $tmp/root/debootstrap/debootstrap.log)"
		rm -rf "$tmp/root/var/cache/apt/archives/"*.deb "$tmp/root/var/lib/apt/lists/"*_Packages
		mkdir -p "$tmp/root/mnt/in"
		touch "$tmp/done"
		mv "$tmp" "$dir"
		log "root file system ready in $((SECONDS - start)) s: $dir"
	fi
	printf '%s\n' "$dir"
}

# initrd WORK VERSION MODROOT: build WORK/initrd.img: busybox, the boot modules
# (with their dependencies, in load order) and an /init that mounts /dev/vda as
# the root and the test's disk /dev/vdb on /mnt/in, then runs /mnt/in/init.
initrd() {
	local work=$1 ver=$2 modroot=$3 dir=$1/initrd deb n=0 m
	mkdir -p "$dir/bin" "$dir/modules" "$dir/dev" "$dir/proc" "$dir/root"
	deb=$(download "$work" "busybox-static/$RELEASE")
	dpkg-deb --fsys-tarfile "$deb" | tar -xO ./bin/busybox >"$dir/bin/busybox"
	chmod 755 "$dir/bin/busybox"
	for m in "${BOOT_MODULES[@]}"; do
		modprobe -d "$modroot" -S "$ver" --show-depends "$m" || die "no module $m in $ver"
	done | awk '$1 == "insmod" && !seen[$2]++ { print $2 }' |
		while read -r m; do
			n=$((n + 1))
			local out
			out="$dir/modules/$(printf '%02d' "$n")-$(basename "${m%%.ko*}").ko"
			case "$m" in
			*.ko.xz) xz -dc "$m" >"$out" ;;
			*.ko.zst) zstd -qdc "$m" >"$out" ;;
			*.ko.gz) gzip -dc "$m" >"$out" ;;
			*) cp "$m" "$out" ;;
			esac
		done
	[ -n "$(ls "$dir/modules")" ] || die "no boot modules found for $ver"
	cat >"$dir/init" <<-'EOF'
		#!/bin/busybox sh
		/bin/busybox --install -s /bin
		fail() { echo "initrd: $*"; poweroff -f; }
		mount -t devtmpfs devtmpfs /dev
		mount -t proc proc /proc
		for m in /modules/*.ko; do
			# Not fatal (crc32c-intel needs SSE 4.2): a missing one fails the mount.
			insmod "$m" || echo "initrd: insmod $m failed"
		done
		i=0
		while [ ! -b /dev/vda ] || [ ! -b /dev/vdb ]; do
			i=$((i + 1))
			[ $i -lt 600 ] || { cat /proc/modules; fail "no /dev/vda and /dev/vdb after 60 s"; }
			sleep 0.1
		done
		mount -t ext4 /dev/vda /root || fail "mount /dev/vda"
		mount -t ext4 -o ro /dev/vdb /root/mnt/in || fail "mount /dev/vdb"
		umount /proc
		mount --move /dev /root/dev
		exec switch_root /root /mnt/in/init
	EOF
	chmod 755 "$dir/init"
	(cd "$dir" && find . | cpio -o -H newc --quiet | gzip -1) >"$work/initrd.img"
	rm -rf "$dir"
}

# kernel NAME SUITE PACKAGE: build (once) and print the kernel's directory.
kernel() {
	local name=$1 suite=$2 pkg=$3 dir
	dir="$CACHE/$name-$(key "$ROOTFS_LAYOUT" "$LAYOUT" "$RELEASE" "$ROOTFS_PACKAGES" "$name $suite $pkg")"
	if [ -f "$dir/done" ]; then
		printf '%s\n' "$dir"
		return
	fi
	local root work=$dir.tmp start=$SECONDS deb dep ver
	root=$(rootfs)
	private_apt
	rm -rf "$work"
	mkdir -p "$work"
	deb=$(download "$work" "$pkg/$suite")
	# A metapackage (linux-image-amd64) depends on the kernel package itself.
	dep=$(dpkg-deb -f "$deb" Depends | tr ',' '\n' | sed -n 's/^ *\(linux-image-[^ ]*\).*/\1/p' | head -1)
	if [ -n "$dep" ]; then
		deb=$(download "$work" "$dep/$suite")
	fi
	dpkg-deb -x "$deb" "$work/x"
	ver=$(ls "$work/x/lib/modules")
	[ -f "$work/x/boot/vmlinuz-$ver" ] || die "$deb has no /boot/vmlinuz-$ver"
	cp "$work/x/boot/vmlinuz-$ver" "$work/vmlinuz"
	printf '%s %s\n' "$(dpkg-deb -f "$deb" Package)" "$(dpkg-deb -f "$deb" Version)" >"$work/package"
	printf '%s\n' "$ver" >"$work/release"
	log "$name: $(cat "$work/package") ($ver)"

	# The root: the shared debootstrap tree (hard links: nothing of it is
	# modified) plus this kernel's modules, indexed by depmod.
	cp -al "$root/root" "$work/root"
	local mods=$work/root/lib/modules/$ver d
	mkdir -p "$mods/kernel"
	for d in "${MODULE_DIRS[@]}"; do
		if [ -d "$work/x/lib/modules/$ver/kernel/$d" ]; then
			mkdir -p "$mods/kernel/$(dirname "$d")"
			cp -a "$work/x/lib/modules/$ver/kernel/$d" "$mods/kernel/$d"
		fi
	done
	cp -a "$work/x/lib/modules/$ver/modules.builtin"* "$work/x/lib/modules/$ver/modules.order" "$mods/"
	depmod -b "$work/root" "$ver"
	initrd "$work" "$ver" "$work/root"
	mkfs.ext4 -q -F -L periscope-root -d "$work/root" "$work/root.img" 2G >&2
	rm -rf "$work/root" "$work/x" "$work"/*.deb
	touch "$work/done"
	rm -rf "$dir"
	mv "$work" "$dir"
	log "$name ready in $((SECONDS - start)) s: $dir"
	printf '%s\n' "$dir"
}

exec 9>"$CACHE/.lock"
flock 9

found=0
while read -r name suite pkg rest; do
	case "$name" in '' | '#'*) continue ;; esac
	[ -z "$rest" ] || die "$TABLE: bad line: $name $suite $pkg $rest"
	if [ $# -gt 0 ]; then
		want=
		for n in "$@"; do [ "$n" = "$name" ] && want=1; done
		[ -n "$want" ] || continue
	fi
	found=$((found + 1))
	printf '%s %s\n' "$name" "$(kernel "$name" "$suite" "$pkg")"
done <"$TABLE"
[ "$found" -gt 0 ] || die "no kernel of $TABLE matches: $*"
