"""The policy walk (issue 19): every route the API serves is enforced under a rule of the policy table,
named as its OpenStack service names it, and a project reader, a project member and an admin of
another (not the admin) project get, over real HTTP, what that rule's default says.

One API app (its cell a fake conductor on real ZeroMQ) serves every case of the module. For each route
(and each action, network collection and router action its template stands for) each persona sends one
request with ids that exist where the rule's target needs them (its own project, its own user, an image
of the walk project) and made-up ids elsewhere; the rule's default is evaluated for the persona's
credentials on the same target (and, for a write outside Keystone, the WRITE_RULE every write needs:
a reader changes nothing), and the answer must be 403 exactly when the defaults refuse (404 for an
image the persona may not see, as Glance hides it). What happens past the policy (404 for a made-up id,
400 for an empty body) is the handler's business, tested elsewhere.
"""
from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from aiohttp.test_utils import TestClient

from api.middleware import WRITE_RULE
from api.policy import routes, rules
from api.policy.engine import evaluate, parse
from tests.unit.api_fake_cell import fake_cell
from tests.unit.api_support import SECRETS, make_cluster, start_client, token

FAKE = "0" * 32  # an id that names nothing
SERVICE_NAMES: dict[str, Callable[[str], bool]] = {  # how each service's rules are named
    "/identity": lambda r: r.startswith("identity:"),
    "/compute": lambda r: r.startswith("os_compute_api:"),
    "/volume": lambda r: r.startswith(("volume:", "volume_extension:", "limits_extension:", "scheduler_extension:",
                                       "snapshot_extension:", "group:", "message:")),
    "/image": lambda r: r in rules.GLANCE,
    "/network": lambda r: r in rules.NEUTRON,
    "/dashboard": lambda r: r in rules.DASHBOARD,
}


@dataclass(frozen=True)
class Case:
    prefix: str
    method: str
    template: str
    rule: str  # resolved: the action's, the collection's
    path_values: tuple[tuple[str, str], ...] = ()  # fixed path values (collection, action)
    body: Any = None


def _cases() -> list[Case]:
    out: list[Case] = []
    for prefix, table in routes.SERVICES.items():
        if prefix == "/ec2":
            continue  # EC2 authenticates each request by its SigV4 signature, not a token (test_api_ec2*)
        for (method, template), rule in table.items():
            if rule == "os_compute_api:servers:action":
                out += [Case(prefix, method, template, r, body={a: {}}) for a, r in routes.COMPUTE_ACTIONS.items()]
            elif rule == "volume:action":
                out += [Case(prefix, method, template, r, body={a: {}}) for a, r in routes.VOLUME_ACTIONS.items()]
            elif rule == "volume:snapshot_action":
                out += [Case(prefix, method, template, r, body={a: {}}) for a, r in routes.SNAPSHOT_ACTIONS.items()]
            elif rule == "volume:type_action":
                out += [Case(prefix, method, template, r, body={a: {}}) for a, r in routes.TYPE_ACTIONS.items()]
            elif rule == "volume:group_action":
                out += [Case(prefix, method, template, r, body={a: {}}) for a, r in routes.GROUP_ACTIONS.items()]
            elif rule == "os_compute_api:os-aggregates:action":
                out += [Case(prefix, method, template, r, body={a: {}}) for a, r in routes.AGGREGATE_ACTIONS.items()]
            elif rule == "os_compute_api:flavors:action":
                out += [Case(prefix, method, template, r, body={a: {}}) for a, r in routes.FLAVOR_ACTIONS.items()]
            elif "{resource}" in rule:
                out += [Case(prefix, method, template, rule.replace("{resource}", res), (("collection", coll),))
                        for coll, res in routes.NETWORK_RESOURCES.items()]
            elif rule == "{action}":
                out += [Case(prefix, method, template, a, (("action", a),)) for a in routes.ROUTER_ACTIONS]
            else:
                out.append(Case(prefix, method, template, rule))
    return out


CASES = _cases()


def _served(app: Any, prefix: str = "") -> set[tuple[str, str]]:
    """(method, full path template) of every route of the app and its sub-apps."""
    out = set()
    for route in app.router.routes():
        info = route.resource.get_info() if route.resource else {}
        if "app" in info:
            out |= _served(info["app"], prefix + info["prefix"])
        elif route.method != "HEAD":
            out.add((route.method, route.resource.canonical if route.resource else ""))
    return out


def test_every_route_has_a_rule_named_as_its_service_names_it(tmp_path: Path) -> None:
    from api.app import make_app
    served = _served(make_app(make_cluster(tmp_path)))
    table = {(m, prefix + t): r for prefix, tbl in routes.SERVICES.items() for (m, t), r in tbl.items()}
    assert sorted(served - set(table)) == [], "routes served without a rule in api/policy/routes.py"
    assert sorted(set(table) - served) == [], "rules for routes the API does not serve"
    defaults = rules.defaults()
    for case in CASES:
        if case.rule in (routes.PUBLIC, routes.ANY_TOKEN):
            continue
        assert case.rule in defaults, f"{case.method} {case.prefix}{case.template}: {case.rule} is not a rule"
        assert SERVICE_NAMES[case.prefix](case.rule), f"{case.rule} is not named as {case.prefix}'s rules are"


@dataclass
class Persona:
    name: str
    user_id: str
    project_id: str
    token: str
    roles: tuple[str, ...]

    def credentials(self) -> dict[str, Any]:
        return {"roles": self.roles, "user_id": self.user_id, "domain_id": "default", "project_id": self.project_id,
                "project_domain_id": "default", "is_admin_project": False, "system_scope": None}


@dataclass
class Walk:
    client: TestClient[Any, Any]
    admin: dict[str, str]
    project: str  # the walk project: reader and member have their roles on it
    other: str  # the other project: its admin is no cloud admin
    personas: list[Persona]


async def _call(client: TestClient[Any, Any], method: str, path: str, headers: dict[str, str],
                body: Any = None) -> Any:
    resp = await client.request(method, path, headers=headers, json=body)
    assert resp.status < 300, f"{method} {path}: {resp.status} {await resp.text()}"
    return await resp.json() if resp.status != 204 else None


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def walk(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Walk]:
    async with fake_cell() as cell:
        client = await start_client(make_cluster(tmp_path_factory.mktemp("walk"), router=cell.router))
        try:
            admin = {"X-Auth-Token": await token(client, "admin", SECRETS["admin_password"], "admin")}
            v3 = "/identity/v3"
            roles = {r["name"]: r["id"] for r in (await _call(client, "GET", f"{v3}/roles", admin))["roles"]}
            project = (await _call(client, "POST", f"{v3}/projects", admin, {"project": {"name": "walk"}}))["project"]
            other = (await _call(client, "POST", f"{v3}/projects", admin,
                                 {"project": {"name": "walk-other"}}))["project"]
            personas = []
            for name, role, on in (("reader", "reader", project), ("member", "member", project),
                                   ("other-admin", "admin", other)):
                user = (await _call(client, "POST", f"{v3}/users", admin,
                                    {"user": {"name": f"walk-{name}", "password": "walk-pw"}}))["user"]
                await _call(client, "PUT", f"{v3}/projects/{on['id']}/users/{user['id']}/roles/{roles[role]}", admin)
                issued = await token(client, f"walk-{name}", "walk-pw", on["name"])
                shown = await _call(client, "GET", f"{v3}/auth/tokens", {**admin, "X-Subject-Token": issued})
                carried = tuple(r["name"] for r in shown["token"]["roles"])  # the implied ones included
                personas.append(Persona(name, user["id"], on["id"], issued, carried))
            yield Walk(client, admin, project["id"], other["id"], personas)
        finally:
            await client.close()


async def _image(walk: Walk, template: str) -> str:
    """A new shared image of the walk project (a case may delete or deactivate it), in the state the route
    acts on: the other project a member of it when the route names a member, active (its bits uploaded) to
    be deactivated, deactivated to be reactivated."""
    made = await _call(walk.client, "POST", "/image/v2/images", walk.admin,
                       {"name": "walk-image", "disk_format": "raw", "container_format": "bare",
                        "owner": walk.project, "visibility": "shared"})
    path = f"/image/v2/images/{made['id']}"
    if "{member_id}" in template:
        await _call(walk.client, "POST", f"{path}/members", walk.admin, {"member": walk.other})
    if "/actions/" in template:
        resp = await walk.client.put(f"{path}/file", data=b"\0" * 512,
                                     headers={**walk.admin, "Content-Type": "application/octet-stream"})
        assert resp.status == 204, await resp.text()
    if template.endswith("/reactivate"):
        await _call(walk.client, "POST", f"{path}/actions/deactivate", walk.admin)
    return str(made["id"])


# what a request to these routes carries, so that the answer is the policy's and not a refusal of the body
IMAGE_BODIES: dict[tuple[str, str], Any] = {
    ("POST", "/v2/images/{image_id}/members"): {"member": FAKE},
    ("PUT", "/v2/images/{image_id}/members/{member_id}"): {"status": "accepted"},
}


def _target(case: Case, persona: Persona, walk: Walk) -> dict[str, Any]:
    """The target the rule is evaluated on: what the handler or route_policy puts in it."""
    if case.prefix == "/image":
        if "{image_id}" not in case.template:  # a new image: the caller's own
            return {"owner": persona.project_id, "visibility": "shared", "project_id": persona.project_id}
        member = "{member_id}" in case.template
        return {"owner": walk.project, "visibility": "shared", "member_id": walk.other if member else None,
                "project_id": persona.project_id, "user_id": persona.user_id}
    if case.prefix == "/identity":
        ids = {f"target.{kind}.id": FAKE for kind in ("project", "domain", "group", "role")}
        return {**ids, "user_id": persona.user_id, "target.user.id": persona.user_id,
                "target.credential.user_id": persona.user_id, "target.token.user_id": persona.user_id}
    every = (case.method, case.template) in routes.EVERY_PROJECT
    return {"project_id": None if every else persona.project_id, "user_id": persona.user_id}


async def _path(case: Case, persona: Persona, walk: Walk) -> str:
    values = dict(case.path_values)
    for name in re.findall(r"{(\w+)}", case.template):
        if name in values:
            continue
        if name in ("project_id", "target"):
            values[name] = FAKE if case.prefix == "/identity" else persona.project_id
        elif name == "user_id":
            values[name] = persona.user_id
        elif name == "image_id":
            values[name] = await _image(walk, case.template)
        elif name == "member_id":
            values[name] = walk.other
        else:
            values[name] = FAKE
    path = case.template
    for name, value in values.items():
        path = path.replace("{" + name + "}", value)
    return case.prefix + path


def _allowed(rule: str, persona: Persona, target: dict[str, Any]) -> bool:
    if rule in (routes.PUBLIC, routes.ANY_TOKEN):
        return True
    defaults = rules.defaults()
    return evaluate(parse(defaults[rule]), persona.credentials(), target, defaults)


def _may_write(case: Case, persona: Persona) -> bool:
    """What token_auth asks of every write outside Keystone (WRITE_RULE: a reader changes nothing)."""
    if case.prefix == "/identity" or case.method in ("GET", "HEAD") or case.rule == routes.PUBLIC:
        return True
    return _allowed(WRITE_RULE, persona, {"project_id": persona.project_id})


@pytest.mark.asyncio(loop_scope="module")
@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c.method} {c.prefix}{c.template} {c.rule}")
async def test_each_persona_gets_what_the_default_rule_says(walk: Walk, case: Case) -> None:
    for persona in walk.personas:
        path = await _path(case, persona, walk)
        target = _target(case, persona, walk)
        headers = {"X-Auth-Token": persona.token}
        if case.template == "/v3/auth/tokens":  # a token of the persona's own as the subject (revoked, maybe)
            async with walk.client.post("/identity/v3/auth/tokens", json={"auth": {"identity": {
                    "methods": ["token"], "token": {"id": persona.token}}}}) as resp:
                headers["X-Subject-Token"] = resp.headers["X-Subject-Token"]
        if case.method == "PATCH" and case.prefix == "/image":
            resp = await walk.client.patch(path, data="[]", headers={
                **headers, "Content-Type": "application/openstack-images-v2.1-json-patch"})
        else:
            body = IMAGE_BODIES.get((case.method, case.template), case.body)
            resp = await walk.client.request(case.method, path, headers=headers, json=body if body is not None else {})
        text = await resp.text()
        visible = case.prefix != "/image" or "{image_id}" not in case.template or \
            _allowed("get_image", persona, target)
        if not visible:
            assert resp.status == 404, f"{persona.name}: {case.method} {path} {resp.status} {text}"
        elif _allowed(case.rule, persona, target) and _may_write(case, persona):
            assert resp.status != 403, f"{persona.name} refused {case.rule}: {case.method} {path} {text}"
        else:
            assert resp.status == 403, f"{persona.name} not refused {case.rule}: {case.method} {path} " \
                                       f"{resp.status} {text}"
            assert case.rule in text or WRITE_RULE in text, f"{persona.name}: the refusal names no rule: {text}"
