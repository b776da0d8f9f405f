"""The policy language (oslo.policy's, the subset every OpenStack default uses) and its evaluator.

A rule is an expression of checks joined by `and`, `or`, `not` and parentheses:

    @ / "" (always)      ! (never)           rule:NAME (another rule)
    role:NAME            system_scope:all     is_admin_project:True
    project_id:%(project_id)s  (a credential compared with a target value)
    'public':%(visibility)s    (a literal compared with a target value)

Credentials are the caller's (roles, project_id, user_id, domain_id, system_scope,
is_admin_project); the target is what the action touches (project_id of the resource,
target.user.id, visibility...). A reference to a target key that is absent never matches.
Parsed rules are cached: a check is a walk of a small tree, no parsing on the request path.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

_TOKEN = re.compile(r"\s*(\(|\)|(?:%\([^)]*\)s|[^\s()])+)")  # a word may hold %(key)s
_TARGET_REF = re.compile(r"^%\((?P<key>[^)]+)\)s$")


class PolicyError(ValueError):
    """A rule that does not parse, or names a rule that does not exist."""


@dataclass(frozen=True)
class Always:
    value: bool


@dataclass(frozen=True)
class Check:
    kind: str   # role | rule | a credential name | a quoted literal
    match: str  # the right-hand side: a value or %(target key)s


@dataclass(frozen=True)
class Not:
    operand: Node


@dataclass(frozen=True)
class All:
    operands: tuple[Node, ...]


@dataclass(frozen=True)
class Any_:
    operands: tuple[Node, ...]


Node = Always | Check | Not | All | Any_


def _tokens(text: str) -> list[str]:
    out: list[str] = []
    pos = 0
    text = text.strip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            break
        out.append(m.group(1))
        pos = m.end()
    return out


@lru_cache(maxsize=4096)
def parse(text: str) -> Node:
    """Parse a rule; PolicyError for a malformed one (an operator's typo fails loudly at load)."""
    if text.strip() in ("", "@"):
        return Always(True)
    tokens = _tokens(text)
    node, rest = _parse_or(tokens, text)
    if rest:
        raise PolicyError(f"unexpected {' '.join(rest)!r} in rule {text!r}")
    return node


def _parse_or(tokens: list[str], text: str) -> tuple[Node, list[str]]:
    first, tokens = _parse_and(tokens, text)
    parts = [first]
    while tokens and tokens[0].lower() == "or":
        nxt, tokens = _parse_and(tokens[1:], text)
        parts.append(nxt)
    return (parts[0] if len(parts) == 1 else Any_(tuple(parts))), tokens


def _parse_and(tokens: list[str], text: str) -> tuple[Node, list[str]]:
    first, tokens = _parse_not(tokens, text)
    parts = [first]
    while tokens and tokens[0].lower() == "and":
        nxt, tokens = _parse_not(tokens[1:], text)
        parts.append(nxt)
    return (parts[0] if len(parts) == 1 else All(tuple(parts))), tokens


def _parse_not(tokens: list[str], text: str) -> tuple[Node, list[str]]:
    if tokens and tokens[0].lower() == "not":
        operand, rest = _parse_not(tokens[1:], text)
        return Not(operand), rest
    return _parse_atom(tokens, text)


def _parse_atom(tokens: list[str], text: str) -> tuple[Node, list[str]]:
    if not tokens:
        raise PolicyError(f"rule {text!r} ends where a check was expected")
    head, rest = tokens[0], tokens[1:]
    if head == "(":
        node, rest = _parse_or(rest, text)
        if not rest or rest[0] != ")":
            raise PolicyError(f"unbalanced parentheses in rule {text!r}")
        return node, rest[1:]
    if head == "@":
        return Always(True), rest
    if head == "!":
        return Always(False), rest
    kind, sep, match = head.partition(":")
    if not sep or not kind or not match:
        raise PolicyError(f"{head!r} in rule {text!r} is not a check (kind:value)")
    return Check(kind, match), rest


def _resolve(match: str, target: Mapping[str, Any]) -> tuple[bool, Any]:
    ref = _TARGET_REF.match(match)
    if ref is None:
        return True, match
    key = ref.group("key")
    if key not in target:
        return False, None
    return True, target[key]


def evaluate(node: Node, creds: Mapping[str, Any], target: Mapping[str, Any],
             rules: Mapping[str, str], depth: int = 0) -> bool:
    if depth > 32:
        raise PolicyError("rules refer to each other in a loop")
    if isinstance(node, Always):
        return node.value
    if isinstance(node, Not):
        return not evaluate(node.operand, creds, target, rules, depth)
    if isinstance(node, All):
        return all(evaluate(n, creds, target, rules, depth) for n in node.operands)
    if isinstance(node, Any_):
        return any(evaluate(n, creds, target, rules, depth) for n in node.operands)
    if node.kind == "rule":
        if node.match not in rules:
            raise PolicyError(f"rule:{node.match} names no rule")
        return evaluate(parse(rules[node.match]), creds, target, rules, depth + 1)
    found, value = _resolve(node.match, target)
    if not found:
        return False
    if node.kind == "role":
        return str(value).lower() in {r.lower() for r in creds.get("roles", ())}
    if node.kind[:1] in ("'", '"'):  # a literal on the left: 'public':%(visibility)s
        return node.kind.strip("'\"") == str(value)
    have = creds.get(node.kind)
    if have is None or value is None:
        return False
    return str(have) == str(value)  # booleans as oslo.policy compares them: is_admin_project:True


def referenced_rules(text: str) -> set[str]:
    """The rule names a rule refers to (rule:NAME), for checking a file at load."""
    out: set[str] = set()

    def walk(node: Node) -> None:
        if isinstance(node, Check) and node.kind == "rule":
            out.add(node.match)
        elif isinstance(node, Not):
            walk(node.operand)
        elif isinstance(node, (All, Any_)):
            for n in node.operands:
                walk(n)

    walk(parse(text))
    return out
