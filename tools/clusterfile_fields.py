"""The field checks cluster.yaml's parser is built on (tools/clusterfile.py): one typed check per kind of
value, each failing with the file, the field's path and what was expected; and the YAML reading itself."""
from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Any, NoReturn

import yaml

from tools.strict_yaml import load_without_duplicates

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$")
HOSTNAME_RE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$")


class ClusterFileError(Exception):
    """A mistake in cluster.yaml: names the file, the field path and what was expected."""

    def __init__(self, file: str, path: str, message: str) -> None:
        self.file, self.path, self.message = file, path, message
        super().__init__(f"{file}: {path}: {message}" if path else f"{file}: {message}")


# --- YAML loading ---------------------------------------------------------------

def read_yaml(path: Path, label: str) -> Any:
    try:
        text = path.read_text()
    except OSError as exc:
        raise ClusterFileError(label, "", f"cannot read: {exc.strerror or exc}") from None
    try:
        return load_without_duplicates(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ClusterFileError(label, where, f"invalid YAML: {problem}") from None


def state_dir_of(path: Path, top: Any, parser: FieldParser | None = None) -> Path:
    """The state directory of cluster.yaml's top mapping `top`: its `state_dir` (default var), relative to
    the file's directory."""
    value = top.get("state_dir", "var") if isinstance(top, dict) else "var"
    return (path.resolve().parent / (parser or FieldParser(str(path))).string(value, "state_dir", "a directory path")).resolve()


# --- small typed validators -------------------------------------------------------

def got(value: Any) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return repr(value)


class FieldParser:
    """Checks one field at a time; `label` names the file in every error."""

    def __init__(self, label: str) -> None:
        self.label = label

    def fail(self, path: str, message: str) -> NoReturn:
        raise ClusterFileError(self.label, path, message)

    def mapping(self, value: Any, path: str, required: tuple[str, ...], optional: tuple[str, ...]) -> dict[str, Any]:
        if not isinstance(value, dict):
            self.fail(path, f"expected a mapping with keys {', '.join(required + optional)}, got {got(value)}")
        for key in value:
            if key not in required and key not in optional:
                self.fail(f"{path}.{key}" if path else str(key),
                          f"unknown key (expected one of: {', '.join(required + optional)})")
        for key in required:
            if key not in value:
                self.fail(f"{path}.{key}" if path else key, "required key is missing")
        return value

    def string(self, value: Any, path: str, expected: str = "a string") -> str:
        if not isinstance(value, str) or not value:
            self.fail(path, f"expected {expected}, got {got(value)}")
        return value

    def seconds(self, value: Any, path: str, low: float, high: float) -> float:
        """A number of seconds in [low, high] (above 0 when low is 0)."""
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not (low or 1e-9) <= value <= high:
            self.fail(path, f"expected seconds between {low:g} and {high:g}, got {got(value)}")
        return float(value)

    def name(self, value: Any, path: str) -> str:
        if not isinstance(value, str) or not NAME_RE.match(value):
            self.fail(path, f"expected a name of letters, digits, '-' and '_' (at most 63), got {got(value)}")
        return value

    def port(self, value: Any, path: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
            self.fail(path, f"expected a port number 1-65535, got {got(value)}")
        return value

    def address(self, value: Any, path: str) -> str:
        text = self.string(value, path, "an IP address or DNS name")
        try:
            return str(ipaddress.ip_address(text))
        except ValueError:
            if not HOSTNAME_RE.match(text):
                self.fail(path, f"expected an IP address or DNS name, got {text!r}")
            return text

    def byte_size(self, raw: Any, path: str) -> int:
        """A size in bytes: an integer, or a number with a binary suffix ("8G", "512M")."""
        if isinstance(raw, int) and not isinstance(raw, bool) and raw > 0:
            return raw
        m = re.fullmatch(r"(\d+)\s*([KMGT])i?B?", raw.strip(), re.IGNORECASE) if isinstance(raw, str) else None
        if m is None or int(m.group(1)) <= 0:
            self.fail(path, f"expected a positive size in bytes or with a K/M/G/T suffix (e.g. 8G), got {got(raw)}")
        return int(m.group(1)) << (10 * ("KMGT".index(m.group(2).upper()) + 1))

    def host_port(self, raw: Any, path: str, expected: str) -> tuple[str, int]:
        """Split "HOST:PORT" ("[v6]:PORT" too)."""
        if not isinstance(raw, str) or ":" not in raw:
            self.fail(path, f"expected {expected}, got {got(raw)}")
        host, _, port_text = raw.rpartition(":")
        host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
        if not host or not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
            self.fail(path, f"expected {expected}, got {raw!r}")
        return host, int(port_text)
