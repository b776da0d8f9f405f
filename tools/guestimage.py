"""Build the tiny test guest from Debian packages, with no other download.

A Debian cloud kernel plus a busybox initramfs whose /init prints a banner on
the serial console, configures eth0 (DHCP, or a static address from the kernel
command line), prints its network settings, fetches and runs its user data
from the metadata service, and reports block devices as they come and go.

Outputs <out>/vmlinuz and <out>/initramfs-<digest>.gz (~14 MB + ~1 MB). Needs
`apt-get update` to have run once (apt-get download resolves from the lists).
"""
from __future__ import annotations

import hashlib
import shutil
import subprocess
import tempfile
from pathlib import Path

BANNER = "CELLCLOUD-GUEST-UP"
MODULES = (
    "drivers/virtio/virtio_ring", "drivers/virtio/virtio", "drivers/virtio/virtio_pci_modern_dev",
    "drivers/virtio/virtio_pci_legacy_dev", "drivers/virtio/virtio_pci", "drivers/block/virtio_blk",
    "net/core/failover", "drivers/net/net_failover", "drivers/net/virtio_net",
    "drivers/scsi/virtio_scsi",
    "drivers/input/evdev", "drivers/acpi/button",  # the ACPI power button: clean shutdown and soft reboot
)

UDHCPC_SCRIPT = """#!/bin/sh
case "$1" in
  deconfig) ip addr flush dev "$interface"; ip link set "$interface" up ;;
  bound|renew)
    ip addr flush dev "$interface"
    ip addr add "$ip/${mask:-24}" dev "$interface"
    [ -n "$router" ] && ip route replace default via ${router%% *} dev "$interface"
    echo "CELLCLOUD-NET dhcp $1 $interface ip=$ip/${mask:-24} router=$router" > /dev/console ;;
esac
exit 0
"""

INIT = f"""#!/bin/sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for m in $(cat /etc/modules-order); do insmod /lib/modules/$m.ko 2>/dev/null; done
# ACPI power button (libvirt's shutdown, Nova's clean stop and soft reboot): power off at once
for e in /sys/class/input/event*; do
  [ "$(cat $e/device/name 2>/dev/null)" = "Power Button" ] || continue
  ( head -c 1 /dev/input/${{e##*/}} >/dev/null && echo "CELLCLOUD-POWEROFF" && poweroff -f ) &
done
echo "{BANNER} kernel=$(uname -r) uptime=$(cut -d' ' -f1 /proc/uptime) mem=$(awk '/MemTotal/{{print $2}}' /proc/meminfo)kB"
# kernel command line: cc.ip=A.B.C.D/NN | cc.ip=dhcp ; cc.gw=A.B.C.D
IP=dhcp
for a in $(cat /proc/cmdline); do
  case "$a" in cc.ip=*) IP=${{a#cc.ip=}};; cc.gw=*) GW=${{a#cc.gw=}};; esac
done
ip link set lo up
if [ -e /sys/class/net/eth0 ]; then
  ip link set eth0 up
  if [ "$IP" = dhcp ]; then
    udhcpc -i eth0 -t 10 -T 1 -A 1 -n -q -s /usr/share/udhcpc/default.script >/dev/null 2>&1 \\
      || echo "CELLCLOUD-NET dhcp failed on eth0"
  else
    ip addr add "$IP" dev eth0; [ -n "$GW" ] && ip route add default via "$GW"
  fi
  echo "CELLCLOUD-NET eth0 mac=$(cat /sys/class/net/eth0/address) $(ip -4 -o addr show eth0 | awk '{{print $4}}')" \\
       "gw=$(ip route | awk '/default/{{print $3}}')"
  # busybox-static's `wget -T` segfaults (Debian 1.35): bound it with `timeout` instead.
  # The instance id always exists, so retrying it tells "no metadata yet" from "no user data".
  for try in 1 2 3 4 5; do
    ID=$(timeout 5 wget -q -O - http://169.254.169.254/latest/meta-data/instance-id 2>/dev/null) && break
    sleep 1
  done
  echo "CELLCLOUD-METADATA instance-id=${{ID:-unreachable}}"
  if [ -n "$ID" ] && timeout 5 wget -q -O /tmp/user-data http://169.254.169.254/latest/user-data 2>/dev/null \
     && [ -s /tmp/user-data ]; then
    echo "CELLCLOUD-USERDATA-BEGIN"
    chmod +x /tmp/user-data; /tmp/user-data 2>&1
    echo "CELLCLOUD-USERDATA-END rc=$?"
  fi
else
  echo "CELLCLOUD-NET no network interface"
fi
echo "CELLCLOUD-READY"
( while true; do setsid sh -c 'exec sh </dev/ttyS0 >/dev/ttyS0 2>&1'; sleep 1; done ) &
OLD=""
while true; do
  NEW=$(cat /proc/partitions)
  if [ "$NEW" != "$OLD" ]; then
    for b in /sys/block/vd*; do
      [ -e "$b" ] || continue; n=${{b##*/}}
      echo "$OLD" | grep -q " $n\\$" && continue
      echo "CELLCLOUD-DISK added $n sectors=$(cat $b/size) head=[$(dd if=/dev/$n bs=32 count=1 2>/dev/null | tr -cd 'A-Za-z0-9_.-')]"
    done
    for n in $(echo "$OLD" | awk 'NR>2{{print $4}}'); do
      echo "$NEW" | grep -q " $n\\$" || echo "CELLCLOUD-DISK removed $n"
    done
    OLD=$NEW
  fi
  sleep 0.5
done
"""


def _run(cmd: list[str], cwd: Path) -> str:
    done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {done.stderr.strip()[-500:]}")
    return done.stdout


def kernel_package(work: Path) -> str:
    deps = _run(["apt-cache", "depends", "linux-image-cloud-amd64"], work)
    for line in deps.splitlines():
        name = line.split(":", 1)[-1].strip()
        if line.strip().startswith("Depends:") and name.startswith("linux-image-") and name[12:13].isdigit():
            return name
    raise RuntimeError("no linux-image-cloud-amd64 kernel found: run `apt-get update` first")


def build(out: Path) -> tuple[Path, Path]:
    """Build (or reuse) the guest; returns (kernel, initramfs). The initramfs is named by a digest of
    what goes into it, so a changed /init is rebuilt instead of reused."""
    digest = hashlib.sha256("\0".join([INIT, UDHCPC_SCRIPT, *MODULES]).encode()).hexdigest()[:12]
    kernel, initrd = out / "vmlinuz", out / f"initramfs-{digest}.gz"
    if kernel.exists() and initrd.exists():
        return kernel, initrd
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="guest-build-", dir=out) as tmp:
        work = Path(tmp)
        _run(["apt-get", "download", kernel_package(work), "busybox-static"], work)
        tree = work / "x"
        for deb in work.glob("*.deb"):
            _run(["dpkg", "-x", str(deb), str(tree)], work)
        kver = next((tree / "lib/modules").iterdir()).name
        root = work / "root"
        for d in ("bin", "etc", "proc", "sys", "dev", "tmp", "run", "lib/modules", "usr/share/udhcpc"):
            (root / d).mkdir(parents=True, exist_ok=True)
        shutil.copy(tree / "bin/busybox", root / "bin/busybox")
        (root / "bin/sh").symlink_to("busybox")
        order = []
        for m in MODULES:
            src = tree / f"lib/modules/{kver}/kernel/{m}.ko"
            if src.exists():  # virtio_scsi may be built in
                shutil.copy(src, root / "lib/modules")
                order.append(Path(m).name)
        (root / "etc/modules-order").write_text("\n".join(order) + "\n")
        script = root / "usr/share/udhcpc/default.script"
        script.write_text(UDHCPC_SCRIPT)
        script.chmod(0o755)
        (root / "init").write_text(INIT)
        (root / "init").chmod(0o755)
        files = subprocess.run(["find", "."], cwd=root, capture_output=True, check=True).stdout
        cpio = subprocess.run([str(root / "bin/busybox"), "cpio", "-o", "-H", "newc"], cwd=root,
                              input=b"\n".join(sorted(files.splitlines())) + b"\n", capture_output=True, check=True)
        gz = subprocess.run(["gzip", "-9"], input=cpio.stdout, capture_output=True, check=True)
        shutil.copy(tree / f"boot/vmlinuz-{kver}", kernel)
        tmp_initrd = initrd.with_suffix(".tmp")
        tmp_initrd.write_bytes(gz.stdout)
        tmp_initrd.rename(initrd)
    return kernel, initrd


if __name__ == "__main__":
    import sys
    print(*build(Path(sys.argv[1] if len(sys.argv) > 1 else "var/guest")))
