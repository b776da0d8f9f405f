"""Real guest boot benchmark: API `server create` -> banner in the console, beside raw libvirt.

Brings up a throw-away one-cell cluster on qemu:///embed (real QEMU; TCG where KVM is
not usable) that registers the tiny guest, then alternates, one boot at a time:
  - API: POST /servers (tiny-linux, m1.tiny) -> poll os-getConsoleOutput until the
    CELLCLOUD-GUEST-UP banner shows; then delete and wait until gone
  - raw: createXML of the same domain (same XML builder, same cached kernel, initramfs
    and base disk, an overlay made beforehand) in this process's own embed root ->
    poll the serial log file until the banner; then destroy
Both poll every POLL seconds. Prints p50/p90 of each and the ratio API/raw.
Goal (issue 4): API within 1.3x of raw libvirt.

With --from-volume (issue 18) the cluster's host is a volume host too, and the API's boot from the image
alternates instead with a boot from a volume the same request makes from that image (block_device_mapping_v2
image -> volume, 1 GiB, delete_on_termination): both to the banner, with their ratio.

    .venv/bin/python -m tools.bench.guest [--boots 5] [--from-volume]
"""
from __future__ import annotations

import argparse
import asyncio
import shutil
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import libvirt  # type: ignore[import-untyped]

from node.compute import domain_xml
from node.compute.driver import (
    create_overlay,
    prepare_embed_root,
    resolve_virt_type,
    short_embed_root,
    start_libvirt_event_loop,
)
from tools.devcluster import RunningCluster, running_cluster

BANNER = "CELLCLOUD-GUEST-UP"
POLL = 0.1  # seconds; each API poll costs three processes a hop, which a TCG guest on 2 cores feels
TIMEOUT = 120.0


def pct(samples: list[float], q: float) -> float:
    return sorted(samples)[min(len(samples) - 1, int(q * len(samples)))]


class Api:
    def __init__(self, session: aiohttp.ClientSession, cluster: RunningCluster) -> None:
        self.s, self.cluster = session, cluster
        self.base = cluster.endpoint
        self.h: dict[str, str] = {}

    async def login(self) -> None:
        creds = self.cluster.credentials("demo")
        body = {"auth": {"identity": {"methods": ["password"], "password": {"user": {
            "name": creds["username"], "domain": {"id": "default"}, "password": creds["password"]}}},
            "scope": {"project": {"name": "demo", "domain": {"id": "default"}}}}}
        async with self.s.post(self.base + "/identity/v3/auth/tokens", json=body) as r:
            assert r.status == 201, await r.text()
            self.h = {"X-Auth-Token": r.headers["X-Subject-Token"]}

    async def get(self, path: str) -> Any:
        async with self.s.get(self.base + path, headers=self.h) as r:
            assert r.status == 200, await r.text()
            return await r.json()

    async def image(self, name: str) -> dict[str, Any]:
        images = (await self.get(f"/image/v2/images?name={name}"))["images"]
        assert images, f"no image {name}: did cellctl up register it?"
        return dict(images[0])

    async def boot_to_banner(self, image_id: str, on_volume: bool = False) -> tuple[float, str]:
        """Seconds from the request to the banner, and the server; `on_volume`: booted from a 1 GiB volume the
        request makes from the image."""
        t0 = time.perf_counter()
        server: dict[str, Any] = {"name": "bench", "flavorRef": "1", "imageRef": image_id}
        if on_volume:
            server.update(imageRef="", block_device_mapping_v2=[{
                "boot_index": 0, "uuid": image_id, "source_type": "image", "destination_type": "volume",
                "volume_size": 1, "delete_on_termination": True}])
        async with self.s.post(self.base + "/compute/v2.1/servers", json={"server": server}, headers=self.h) as r:
            assert r.status == 202, await r.text()
            server_id = str((await r.json())["server"]["id"])
        url = f"{self.base}/compute/v2.1/servers/{server_id}/action"
        while time.perf_counter() - t0 < TIMEOUT:
            async with self.s.post(url, json={"os-getConsoleOutput": {}}, headers=self.h) as r:
                if r.status == 200 and BANNER in (await r.json())["output"]:
                    return time.perf_counter() - t0, server_id
                if r.status not in (200, 409):  # 409: still building, no console yet
                    raise RuntimeError(f"console output: HTTP {r.status} {await r.text()}")
            await asyncio.sleep(POLL)
        raise RuntimeError(f"no banner from {server_id} within {TIMEOUT}s")

    async def delete(self, server_id: str) -> None:
        async with self.s.delete(f"{self.base}/compute/v2.1/servers/{server_id}", headers=self.h) as r:
            assert r.status == 204, await r.text()
        while True:
            async with self.s.get(f"{self.base}/compute/v2.1/servers/{server_id}", headers=self.h) as r:
                if r.status == 404:
                    return
            await asyncio.sleep(0.1)


class Raw:
    """The same domain straight through libvirt, in this process's own embed root."""

    def __init__(self, work: Path, paths: dict[str, str], image: dict[str, Any]) -> None:
        self.work, self.paths, self.image = work, paths, image
        root = work / "embed"
        prepare_embed_root("qemu:///embed", str(root))
        start_libvirt_event_loop()
        self.conn = libvirt.open(f"qemu:///embed?root={short_embed_root(str(root))}")
        self.virt_type = resolve_virt_type("qemu:///embed", "auto")

    async def boot_to_banner(self) -> float:
        inst_id = str(uuid.uuid4())
        inst_dir = self.work / "instances" / inst_id
        inst_dir.mkdir(parents=True)
        overlay = inst_dir / "disk"
        await create_overlay(self.paths["disk"], "raw", str(overlay))
        instance = {"uuid": inst_id, "name": "raw", "flavor": {"vcpus": 1, "ram": 512, "disk": 1},
                    "image": self.image}
        log = inst_dir / "console.log"
        xml = domain_xml.build_domain_xml(instance, self.virt_type, domain_xml.DomainPaths(
            console_log=str(log), disk=str(overlay), disk_format="qcow2", backing=self.paths["disk"],
            backing_format="raw", kernel=self.paths["kernel"],
            initrd=self.paths["ramdisk"], cmdline=str(self.image["properties"]["os_command_line"])))
        t0 = time.perf_counter()
        dom = await asyncio.to_thread(self.conn.createXML, xml, 0)
        try:
            while time.perf_counter() - t0 < TIMEOUT:
                if log.exists() and BANNER in log.read_text(errors="replace"):
                    return time.perf_counter() - t0
                await asyncio.sleep(POLL)
            raise RuntimeError(f"no banner from the raw domain within {TIMEOUT}s")
        finally:
            await asyncio.to_thread(dom.destroy)
            shutil.rmtree(inst_dir, ignore_errors=True)

    def close(self) -> None:
        self.conn.close()


async def from_volume(cluster: RunningCluster, boots: int) -> None:
    """Boot from the image vs boot from a volume made from it by the same request, alternated."""
    async with aiohttp.ClientSession() as session:
        api = Api(session, cluster)
        await api.login()
        machine = await api.image("tiny-linux")
        for on_volume in (False, True):  # warm-up: the image cached on the host and the volume host
            _, warm = await api.boot_to_banner(machine["id"], on_volume)
            await api.delete(warm)
        image_t, volume_t = [], []
        for i in range(boots):
            t, server_id = await api.boot_to_banner(machine["id"])
            image_t.append(t)
            await api.delete(server_id)
            t, server_id = await api.boot_to_banner(machine["id"], on_volume=True)
            volume_t.append(t)
            await api.delete(server_id)
            print(f"  boot {i + 1}/{boots}: from image {image_t[-1]:.2f}s  from volume {volume_t[-1]:.2f}s", flush=True)
    i50, v50 = pct(image_t, 0.5), pct(volume_t, 0.5)
    print(f"guest boot to banner through the API ({boots} boots each, poll {POLL * 1000:.0f} ms):")
    print(f"  from the image                      p50 {i50:.2f}s  p90 {pct(image_t, 0.9):.2f}s")
    print(f"  from a volume made from it (1 GiB)  p50 {v50:.2f}s  p90 {pct(volume_t, 0.9):.2f}s")
    print(f"  ratio volume/image p50: {v50 / i50:.2f}x")


async def run(cluster: RunningCluster, work: Path, boots: int) -> None:
    async with aiohttp.ClientSession() as session:
        api = Api(session, cluster)
        await api.login()
        machine = await api.image("tiny-linux")
        # warm-up: the host caches the three images and QEMU probes its capabilities once
        _, warm = await api.boot_to_banner(machine["id"])
        await api.delete(warm)
        cache = cluster.state / "hosts" / "node1" / "images"
        kernel = await api.get(f"/image/v2/images/{machine['kernel_id']}")
        ramdisk = await api.get(f"/image/v2/images/{machine['ramdisk_id']}")
        paths = {"disk": str(cache / machine["os_hash_value"]), "kernel": str(cache / kernel["os_hash_value"]),
                 "ramdisk": str(cache / ramdisk["os_hash_value"])}
        props = {k: v for k, v in machine.items() if k in ("kernel_id", "ramdisk_id", "os_command_line")}
        raw = Raw(work, paths, {"id": machine["id"], "properties": props})
        try:
            await raw.boot_to_banner()  # its own warm-up (a second embed root probes once too)
            api_t, raw_t = [], []
            for i in range(boots):  # alternate, so load from other work on the host hits both alike
                t, server_id = await api.boot_to_banner(machine["id"])
                api_t.append(t)
                await api.delete(server_id)
                raw_t.append(await raw.boot_to_banner())
                print(f"  boot {i + 1}/{boots}: API {api_t[-1]:.2f}s  raw {raw_t[-1]:.2f}s", flush=True)
        finally:
            raw.close()
    a50, r50 = pct(api_t, 0.5), pct(raw_t, 0.5)
    print(f"guest boot to banner ({raw.virt_type}, {boots} boots each, poll {POLL * 1000:.0f} ms):")
    print(f"  raw libvirt createXML -> banner   p50 {r50:.2f}s  p90 {pct(raw_t, 0.9):.2f}s")
    print(f"  API server create -> banner       p50 {a50:.2f}s  p90 {pct(api_t, 0.9):.2f}s")
    print(f"  ratio API/raw p50: {a50 / r50:.2f}x   (goal <= 1.3x: {'met' if a50 / r50 <= 1.3 else 'NOT met'})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--boots", type=int, default=5)
    parser.add_argument("--from-volume", action="store_true", help="boot from a volume vs from the image")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cc-bench-guest-") as tmp:
        work = Path(tmp)
        with running_cluster(work / "cluster", virt_uri="qemu:///embed", volumes=args.from_volume) as cluster:
            asyncio.run(from_volume(cluster, args.boots) if args.from_volume else run(cluster, work, args.boots))


if __name__ == "__main__":
    main()
