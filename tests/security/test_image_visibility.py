"""Image ids a request carries resolve with the requesting project's visibility, against the
real API app (in-process) and a fake cell over real ZeroMQ: an AMI whose kernel_id or
ramdisk_id names another project's private image boots exactly as one naming an id that does
not exist (400, same message, nothing created), on create, on rebuild and through EC2's
ami-/aki-/ari- ids; and a boot the requester may make carries the kernel's and ramdisk's
records (what the compute fetches) instead of leaving the compute to look the ids up."""
from __future__ import annotations

import uuid as uuidlib
from typing import Any

from tests.unit.test_api_ec2 import Ec2, credentials
from tests.unit.test_api_servers import Cloud, cloud

__all__ = ["cloud"]  # fixture used by name
KERNEL = b"\x4d\x5a not a real kernel, but raw bytes " * 100


async def image(cloud: Cloud, headers: dict[str, str], disk_format: str, data: bytes | None = KERNEL,
                **extra: Any) -> str:
    body = {"name": disk_format, "disk_format": disk_format, "container_format": disk_format, **extra}
    resp = await cloud.client.post("/image/v2/images", json=body, headers=headers)
    assert resp.status == 201, await resp.text()
    image_id = str((await resp.json())["id"])
    if data is not None:
        put = await cloud.client.put(f"/image/v2/images/{image_id}/file", data=data,
                                     headers={**headers, "Content-Type": "application/octet-stream"})
        assert put.status == 204, await put.text()
    return image_id


async def boot(cloud: Cloud, image_id: str) -> tuple[int, dict[str, Any]]:
    body = {"server": {"name": "vm", "flavorRef": "1", "imageRef": image_id, "networks": []}}
    resp = await cloud.client.post("/compute/v2.1/servers", json=body, headers=cloud.demo)
    return resp.status, dict(await resp.json())


def scrub(doc: dict[str, Any], *ids: str) -> dict[str, Any]:
    text = repr(doc)
    for n, image_id in enumerate(ids):
        text = text.replace(image_id, f"<id{n}>")
    return {"doc": text}


async def test_another_projects_private_kernel_or_ramdisk_answers_as_a_missing_one(cloud: Cloud) -> None:
    private_kernel = await image(cloud, cloud.admin, "aki", visibility="private")  # the admin project's
    private_ramdisk = await image(cloud, cloud.admin, "ari", visibility="private")
    own_kernel = await image(cloud, cloud.demo, "aki")
    missing = str(uuidlib.uuid4())
    for prop, hidden in (("kernel_id", private_kernel), ("ramdisk_id", private_ramdisk)):
        extra: dict[str, Any] = {"kernel_id": own_kernel} if prop == "ramdisk_id" else {}
        via_hidden = await image(cloud, cloud.demo, "ami", KERNEL, **extra, **{prop: hidden})
        via_missing = await image(cloud, cloud.demo, "ami", KERNEL, **extra, **{prop: missing})
        hidden_status, hidden_body = await boot(cloud, via_hidden)
        missing_status, missing_body = await boot(cloud, via_missing)
        assert hidden_status == missing_status == 400
        assert hidden_body == {"badRequest": {"code": 400, "message": f"Image {hidden} could not be found."}}
        assert scrub(hidden_body, hidden) == scrub(missing_body, missing)
        # the hidden image itself answers as a missing one too
        shown = await cloud.client.get(f"/image/v2/images/{hidden}", headers=cloud.demo)
        gone = await cloud.client.get(f"/image/v2/images/{missing}", headers=cloud.demo)
        assert shown.status == gone.status == 404
        assert scrub(await shown.json(), hidden) == scrub(await gone.json(), missing)
    assert cloud.cell.conductor.records == {} and cloud.cell.conductor.builds == []
    assert await cloud.mappings() == 0


async def test_rebuild_onto_an_ami_with_a_hidden_kernel_answers_as_a_missing_one(cloud: Cloud) -> None:
    server = await cloud.boot(cloud.demo, networks=[])
    cloud.cell.conductor.activate(server["id"])
    hidden = await image(cloud, cloud.admin, "aki", visibility="private")
    missing = str(uuidlib.uuid4())
    answers = []
    for kernel in (hidden, missing):
        ami = await image(cloud, cloud.demo, "ami", kernel_id=kernel)
        resp = await cloud.client.post(f"/compute/v2.1/servers/{server['id']}/action",
                                       json={"rebuild": {"imageRef": ami}}, headers=cloud.demo)
        answers.append((resp.status, scrub(await resp.json(), kernel)))
    assert answers[0] == answers[1] and answers[0][0] == 400
    assert cloud.cell.conductor.records[server["id"]]["image"]["id"] == cloud.image_id  # not rebuilt


async def test_a_visible_kernel_and_ramdisk_travel_as_records_with_the_boot(cloud: Cloud) -> None:
    public_kernel = await image(cloud, cloud.admin, "aki", visibility="public")
    own_ramdisk = await image(cloud, cloud.demo, "ari", data=KERNEL[::-1])
    ami = await image(cloud, cloud.demo, "ami", kernel_id=public_kernel, ramdisk_id=own_ramdisk)
    status, body = await boot(cloud, ami)
    assert status == 202, body
    record = cloud.cell.conductor.records[body["server"]["id"]]["image"]
    assert record["id"] == ami
    assert (record["kernel"]["id"], record["kernel"]["disk_format"]) == (public_kernel, "aki")
    assert (record["ramdisk"]["id"], record["ramdisk"]["disk_format"]) == (own_ramdisk, "ari")
    assert len(record["kernel"]["os_hash_value"]) == 128 and record["kernel"]["size"] == len(KERNEL)


async def test_a_kernel_id_naming_a_disk_image_is_refused(cloud: Cloud) -> None:
    disk = await image(cloud, cloud.demo, "raw", container_format="bare")
    ami = await image(cloud, cloud.demo, "ami", kernel_id=disk)
    assert await boot(cloud, ami) == (400, {"badRequest": {
        "code": 400, "message": f"Image {disk} named by kernel_id is not an aki image."}})
    assert cloud.cell.conductor.records == {}


async def test_ec2_ids_of_hidden_images_answer_as_missing_ones(cloud: Cloud) -> None:
    hidden = await image(cloud, cloud.admin, "ami", visibility="private")
    admin_cred = await credentials(cloud, cloud.admin)
    admin = Ec2(cloud, admin_cred["access"], admin_cred["secret"])
    listed = {i["Name"]: i["ImageId"] for i in (await admin("describe_images"))["Images"] if i["Name"] == "ami"}
    hidden_ec2 = listed["ami"]  # the admin's listing gave the private image an EC2 id
    number = hidden_ec2.split("-")[1]
    missing_ec2 = "ami-0000ffff"
    demo_cred = await credentials(cloud, cloud.demo)
    demo = Ec2(cloud, demo_cred["access"], demo_cred["secret"])
    for ec2_id in (hidden_ec2, f"aki-{number}", f"ari-{number}"):
        assert await demo.error_detail("describe_images", ImageIds=[ec2_id]) == (
            "InvalidAMIID.NotFound", f"The image id '[{ec2_id}]' does not exist")
        assert await demo.error_detail("run_instances", ImageId=ec2_id, MinCount=1, MaxCount=1) == (
            "InvalidAMIID.NotFound", f"The image id '[{ec2_id}]' does not exist")
    assert await demo.error_detail("run_instances", ImageId=missing_ec2, MinCount=1, MaxCount=1) == (
        "InvalidAMIID.NotFound", f"The image id '[{missing_ec2}]' does not exist")
    assert (await admin("describe_images", ImageIds=[f"aki-{number}"]))["Images"][0]["Name"] == "ami"
    assert hidden not in repr(cloud.cell.conductor.records) and cloud.cell.conductor.records == {}
