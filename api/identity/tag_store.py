"""Project tags in the API DB: validation, reads, the whole-set write, and Keystone's list filters.

A tag is 1 to 255 characters with no ',' (the filters' separator) or '/' (the path's), at most
MAX_TAGS per project, kept as given (case-sensitive, as Keystone compares them).
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import Select, and_, delete, func, insert, not_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from api.db.schema import project_tags, projects
from cells import errors

MAX_TAGS = 80  # Keystone's per-project limit
MAX_TAG = 255
FILTERS = ("tags", "tags-any", "not-tags", "not-tags-any")


def checked_tag(tag: Any) -> str:
    if not isinstance(tag, str) or not tag.strip() or len(tag) > MAX_TAG or "," in tag or "/" in tag:
        raise errors.Invalid(f"Invalid input for field 'tags': a tag is 1 to {MAX_TAG} characters, without ',' "
                             "or '/'")
    return tag


def checked_tags(tags: Any) -> list[str]:
    """A body's tag list, validated, duplicates dropped (order kept)."""
    if not isinstance(tags, list):
        raise errors.Invalid("Invalid input for field 'tags': expected a list of strings")
    out = list(dict.fromkeys(checked_tag(t) for t in tags))
    if len(out) > MAX_TAGS:
        raise errors.Invalid(f"Invalid input for field 'tags': at most {MAX_TAGS} tags per project")
    return out


async def tags_of(conn: AsyncConnection, project_ids: Iterable[str] | Select[Any]) -> dict[str, list[str]]:
    """project id -> its tags, sorted, for each of `project_ids` (or those a query selects) that has any."""
    out: dict[str, list[str]] = {}
    ids = project_ids if isinstance(project_ids, Select) else list(project_ids)
    rows = (await conn.execute(select(project_tags).where(project_tags.c.project_id.in_(ids))
                               .order_by(project_tags.c.name))).all()
    for row in rows:
        out.setdefault(row.project_id, []).append(row.name)
    return out


async def replace_tags(conn: AsyncConnection, project_id: str, tags: list[str]) -> None:
    """The project's tags become exactly `tags` (validated by checked_tags)."""
    await conn.execute(delete(project_tags).where(project_tags.c.project_id == project_id))
    if tags:
        await conn.execute(insert(project_tags), [{"project_id": project_id, "name": t} for t in tags])


async def add_tag(conn: AsyncConnection, project_id: str, tag: str) -> None:
    """One more tag (already there: nothing changes); MAX_TAGS reached: 400."""
    have = (await conn.execute(select(project_tags.c.name).where(project_tags.c.project_id == project_id)))
    names = set(have.scalars().all())
    if tag in names:
        return
    if len(names) >= MAX_TAGS:
        raise errors.Invalid(f"Invalid input for field 'tags': at most {MAX_TAGS} tags per project")
    await conn.execute(insert(project_tags).values(project_id=project_id, name=tag))


def filter_clauses(query: Mapping[str, str]) -> list[Any]:
    """WHERE clauses on projects for Keystone's ?tags= (all of), tags-any, not-tags (not all of),
    not-tags-any (none of); each a comma-separated list."""
    clauses = []
    for key in FILTERS:
        if key not in query:
            continue
        wanted = [checked_tag(t) for t in query[key].split(",")]
        tagged = select(project_tags.c.project_id).where(project_tags.c.name.in_(wanted))
        if key in ("tags", "not-tags"):  # the projects holding every one of them
            tagged = tagged.group_by(project_tags.c.project_id).having(
                func.count(project_tags.c.name) == len(set(wanted)))
        held = projects.c.id.in_(tagged)
        clauses.append(held if key.startswith("tags") else not_(held))
    return [and_(*clauses)] if clauses else []
