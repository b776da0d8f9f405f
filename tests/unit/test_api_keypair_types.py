"""Microversion 2.2 on os-keypairs: key pair types (ssh, x509) in requests and views, create 201 and delete
204; at 2.1 the same calls keep the 2.1 shapes. The x509 fingerprint is checked against openssl's."""
from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient

from tests.unit.api_support import client, cluster, demo_headers

__all__ = ["client", "cluster", "demo_headers"]  # fixtures used by name

KP = "/compute/v2.1/os-keypairs"
V22 = {"OpenStack-API-Version": "compute 2.2"}


def openssl_sha1(cert_pem: str, tmp: Path) -> str:
    path = tmp / "cert.pem"
    path.write_text(cert_pem)
    out = subprocess.run(["openssl", "x509", "-noout", "-fingerprint", "-sha1", "-in", str(path)],
                         capture_output=True, text=True, check=True, timeout=30).stdout
    return out.strip().split("=", 1)[1].lower()


async def test_x509_keypair_at_2_2(client: TestClient[Any, Any], demo_headers: dict[str, str],
                                   tmp_path: Path) -> None:
    headers = {**demo_headers, **V22}
    resp = await client.post(KP, json={"keypair": {"name": "cert", "type": "x509"}}, headers=headers)
    assert resp.status == 201, await resp.text()
    made = (await resp.json())["keypair"]
    assert made["type"] == "x509" and made["public_key"].startswith("-----BEGIN CERTIFICATE-----")
    assert "PRIVATE KEY" in made["private_key"]
    assert made["fingerprint"] == openssl_sha1(made["public_key"], tmp_path)
    # importing the same certificate under another name gives the same fingerprint
    resp = await client.post(KP, json={"keypair": {"name": "cert2", "type": "x509", "public_key": made["public_key"]}},
                             headers=headers)
    assert resp.status == 201 and (await resp.json())["keypair"]["fingerprint"] == made["fingerprint"]
    listed = (await (await client.get(KP, headers=headers)).json())["keypairs"]
    assert [(k["keypair"]["name"], k["keypair"]["type"]) for k in listed] == [("cert", "x509"), ("cert2", "x509")]
    shown = (await (await client.get(f"{KP}/cert", headers=headers)).json())["keypair"]
    assert shown["type"] == "x509"
    assert (await client.delete(f"{KP}/cert", headers=headers)).status == 204


async def test_keypair_type_validation(client: TestClient[Any, Any], demo_headers: dict[str, str]) -> None:
    headers = {**demo_headers, **V22}
    resp = await client.post(KP, json={"keypair": {"name": "k", "type": "rsa"}}, headers=headers)
    assert resp.status == 400
    resp = await client.post(KP, json={"keypair": {"name": "k", "type": "x509", "public_key": "ssh-rsa AAAA"}},
                             headers=headers)
    assert resp.status == 400 and "X509" in (await resp.json())["badRequest"]["message"]
    # at 2.1 there is no type field at all
    resp = await client.post(KP, json={"keypair": {"name": "k", "type": "ssh"}}, headers=demo_headers)
    assert resp.status == 400
    assert (await client.get(KP, headers=headers)).status == 200
    assert (await (await client.get(KP, headers=headers)).json())["keypairs"] == []


async def test_ssh_keypair_keeps_2_1_shapes_at_2_1(client: TestClient[Any, Any], demo_headers: dict[str, str]) -> None:
    resp = await client.post(KP, json={"keypair": {"name": "old"}}, headers=demo_headers)
    assert resp.status == 200
    assert "type" not in (await resp.json())["keypair"]
    shown = (await (await client.get(f"{KP}/old", headers=demo_headers)).json())["keypair"]
    assert "type" not in shown
    typed = (await (await client.get(f"{KP}/old", headers={**demo_headers, **V22})).json())["keypair"]
    assert typed["type"] == "ssh"
    assert (await client.delete(f"{KP}/old", headers=demo_headers)).status == 202
