#!/bin/sh
# The guest's first program (PID 1, started by the initrd of scripts/kernels.sh
# from the test's disk mounted on /mnt/in): mounts what the agent needs, runs the
# guest test (guest.test) with its output on the console (ttyS0) and its result
# on the second serial port (ttyS1), then powers the machine off. qemu runs with
# -no-reboot and the kernel with panic=-1: if this script dies, the machine stops.
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
HOME=/root
export PATH HOME
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /run
mount -t tracefs tracefs /sys/kernel/tracing
mount -t cgroup2 cgroup2 /sys/fs/cgroup
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
ip link set lo up
hostname periscope-guest
stty -F /dev/ttyS1 raw -echo
echo "guest: $(uname -r) up after $(cut -d' ' -f1 /proc/uptime) s"
cd /tmp
GUEST_DIR=/mnt/in GUEST_RESULT=/dev/ttyS1 \
	/mnt/in/guest.test -test.v -test.timeout "$(cat /mnt/in/timeout)" -test.run '^TestGuest$'
echo "guest: guest.test exited with code $? after $(cut -d' ' -f1 /proc/uptime) s"
sync
echo o >/proc/sysrq-trigger
sleep 60
