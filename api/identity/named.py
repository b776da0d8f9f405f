"""A user or project as a token names it."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Named:
    id: str
    name: str
    domain_id: str = ""
    domain_name: str = ""
