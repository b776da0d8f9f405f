"""Scatter-gather over cells: one call per cell, all at once, each bounded by the same bound.

The bound is the cluster's `api.list_bound` (cluster.yaml; the CellRouter carries it as
`router.bound`): the seconds any cell has to answer a request the API sends to every
cell (server listings, the volumes and security groups of server views, network and
volume listings and look-ups, a project's usage). A cell that fails with a cell error or
does not answer in time is `Down` for that request: the caller decides whether that
leaves its part out (`answered`), or fails the request (`answered(..., strict=True)`). Anything else
(a bad filter the cell refused as Invalid, a bug) fails the request at once.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

from cells import errors
from cells.context import RequestContext

LOG = logging.getLogger(__name__)


class _HasPath(Protocol):
    @property
    def path(self) -> str: ...


C = TypeVar("C", bound=_HasPath)
T = TypeVar("T")


@dataclass(frozen=True)
class Down:
    """A cell that did not answer this request: why (a cell error or TimeoutError)."""
    error: BaseException
    bound: float

    @property
    def reason(self) -> str:
        """For logs and errors: a timeout says nothing by itself."""
        if isinstance(self.error, TimeoutError):
            return f"no answer within {self.bound:g} s"
        return str(self.error) or type(self.error).__name__


def is_down(exc: BaseException) -> bool:
    """A cell failure a scatter-gather survives; Invalid (the request itself is wrong) is not one."""
    return isinstance(exc, (errors.CellcloudError, TimeoutError)) and not isinstance(exc, errors.Invalid)


async def scatter(cells: Sequence[C], ctx: RequestContext, bound: float,
                  fn: Callable[[C, RequestContext], Awaitable[T]]) -> list[tuple[C, T | Down]]:
    """fn(cell, ctx bounded by `bound`) on every cell at once, each cut off after `bound` seconds;
    each cell's answer or `Down`, in the order of `cells`. Raises what is not a cell failure."""
    bounded = ctx.with_timeout(bound)

    async def one(cell: C) -> T:
        async with asyncio.timeout(bound):
            return await fn(cell, bounded)

    results = await asyncio.gather(*(one(c) for c in cells), return_exceptions=True)
    out: list[tuple[C, T | Down]] = []
    for cell, result in zip(cells, results):
        if isinstance(result, BaseException):
            if not is_down(result):
                raise result
            out.append((cell, Down(result, bound)))
        else:
            out.append((cell, result))
    return out


def answered(results: Sequence[tuple[C, T | Down]], what: str, strict: bool = False) -> list[tuple[C, T]]:
    """The cells that answered `what`. One that did not is left out (and logged); with `strict` (the
    whole is unknowable without it, as a project's usage) it fails the request: RpcError."""
    out: list[tuple[C, T]] = []
    for cell, result in results:
        if not isinstance(result, Down):
            out.append((cell, result))
        elif strict:
            raise errors.RpcError(reason=f"cell {cell.path} did not answer {what}: {result.reason}") \
                from result.error
        else:
            LOG.warning("cell %s left out of %s: %s", cell.path, what, result.reason)
    return out
