"""EC2 Query protocol: flat form parameters in, XML out.

Responses are rendered from botocore's EC2 service model (the WSDL-derived
shapes every AWS SDK parses with): handlers return plain dicts keyed by the
model's member names ("Reservations", "InstanceId"), and the serializer picks
each element's wire name (reservationSet, instanceId), wraps list members in
<item>, writes booleans lowercase and times as ISO 8601 with milliseconds.
The model is loaded once, off the event loop (`load_model`).
"""
from __future__ import annotations

import asyncio
import base64
import re
from datetime import UTC, datetime
from typing import Any
from xml.sax.saxutils import escape

from botocore.model import ServiceModel, Shape

NAMESPACE = "http://ec2.amazonaws.com/doc/2016-11-15/"
_MODEL: ServiceModel | None = None
_INDEX = re.compile(r"^[1-9][0-9]{0,3}$")  # list positions 1..9999


def _load() -> ServiceModel:
    import botocore.session  # heavy: imported only where the model is needed

    return botocore.session.get_session().get_service_model("ec2")


async def load_model() -> ServiceModel:
    global _MODEL
    if _MODEL is None:
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(60):
            _MODEL = await loop.run_in_executor(None, _load)
    return _MODEL


def model() -> ServiceModel:
    if _MODEL is None:
        raise RuntimeError("the EC2 model is loaded at startup (load_model)")
    return _MODEL


# --- parameters ----------------------------------------------------------------

class ParamError(ValueError):
    pass


def parse_params(form: list[tuple[str, str]]) -> dict[str, Any]:
    """"Filter.1.Name=a&Filter.1.Value.1=b" -> {"Filter": [{"Name": "a", "Value": ["b"]}]}.
    Numbered segments become lists ordered by their number (EC2 numbers from 1)."""
    tree: dict[str, Any] = {}
    for key, value in form:
        parts = key.split(".")
        if not all(parts):
            raise ParamError(f"Malformed parameter name {key!r}")
        node = tree
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            if part.isdigit() and not _INDEX.match(part):
                raise ParamError(f"Malformed list index in {key!r}")
            if last:
                if isinstance(node.get(part), dict):
                    raise ParamError(f"Parameter {key!r} conflicts with another")
                node[part] = value
            else:
                child = node.setdefault(part, {})
                if not isinstance(child, dict):
                    raise ParamError(f"Parameter {key!r} conflicts with another")
                node = child
    listed: dict[str, Any] = _listify(tree)
    return listed


def _listify(node: Any) -> Any:
    if not isinstance(node, dict):
        return node
    if node and all(k.isdigit() for k in node):
        return [_listify(node[k]) for k in sorted(node, key=int)]
    if any(k.isdigit() for k in node):
        raise ParamError("A parameter mixes numbered and named members")
    return {k: _listify(v) for k, v in node.items()}


# --- responses -----------------------------------------------------------------

def _scalar(shape: Shape, value: Any) -> str:
    kind = shape.type_name
    if kind == "boolean":
        return "true" if value else "false"
    if kind == "timestamp":
        if isinstance(value, str):
            value = datetime.fromisoformat(value)
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return str(value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z")
    if kind == "blob":
        return base64.b64encode(value if isinstance(value, bytes) else str(value).encode()).decode()
    return escape(str(value))


def _render(shape: Shape, value: Any, name: str, out: list[str]) -> None:
    if value is None:
        return
    kind = shape.type_name
    if kind == "structure":
        if not isinstance(value, dict):
            raise TypeError(f"{name}: a structure needs a dict, not {type(value).__name__}")
        out.append(f"<{name}>")
        _members(shape, value, out)
        out.append(f"</{name}>")
    elif kind == "list":
        member = shape.member
        item = member.serialization.get("name", "item")
        out.append(f"<{name}>")
        for v in value:
            _render(member, v, item, out)
        out.append(f"</{name}>")
    else:
        out.append(f"<{name}>{_scalar(shape, value)}</{name}>")


def _members(shape: Shape, value: dict[str, Any], out: list[str]) -> None:
    members = shape.members
    for key, v in value.items():
        if key not in members:
            raise KeyError(f"{shape.name} has no member {key!r}")
        member = members[key]
        _render(member, v, member.serialization.get("name", key), out)


def response(action: str, request_id: str, values: dict[str, Any]) -> str:
    """<{Action}Response xmlns=...><requestId/>...members of the output shape...</{Action}Response>"""
    op = model().operation_model(action)
    out = [f'<?xml version="1.0" encoding="UTF-8"?>\n<{action}Response xmlns="{NAMESPACE}">',
           f"<requestId>{escape(request_id)}</requestId>"]
    if op.output_shape is not None:
        _members(op.output_shape, values, out)
    else:  # EC2 answers the actions without output (RebootInstances, ...) with <return>true</return>
        if values:
            raise KeyError(f"{action} has no output members")
        out.append("<return>true</return>")
    out.append(f"</{action}Response>")
    return "".join(out)


def error(code: str, message: str, request_id: str) -> str:
    return ('<?xml version="1.0" encoding="UTF-8"?>\n<Response><Errors><Error>'
            f"<Code>{escape(code)}</Code><Message>{escape(message)}</Message>"
            f"</Error></Errors><RequestID>{escape(request_id)}</RequestID></Response>")
