"""/compute/v2.1/os-instance_usage_audit_log: Nova's task-log view of the instance usage audit (admins only).

    GET /os-instance_usage_audit_log                     the audit period last completed before now
    GET /os-instance_usage_audit_log/{before_timestamp}  ... before "YYYY-MM-DD hh:mm:ss[.ffffff]" (else 400)

Computed as Nova computes it: the period is Nova's default monthly one (from the first of the month before the
last completed month boundary to that boundary), the hosts are every compute service of the cells (disabled
ones too, a deleted one not: os-services), and each host's row would come from the task log its audit task
writes. Cellcloud's computes run no usage audit (it is Nova's `instance_usage_audit` option, off by default:
it exists to emit `compute.instance.exists` notifications, and this cloud sends none), so no host has a task
log: every compute host is listed as not run, with 0 instances and 0 errors, as Nova shows it with the option
off. What is real here: the period and the set of compute hosts.
"""
from __future__ import annotations

import datetime
from typing import Any

from aiohttp import web

from api.compute.compute_services import services
from api.http import authorize
from cells import errors

LIST, SHOW = "os_compute_api:os-instance-usage-audit-log:list", "os_compute_api:os-instance-usage-audit-log:show"


def last_completed_period(before: datetime.datetime) -> tuple[datetime.datetime, datetime.datetime]:
    """Nova's monthly audit period (utils.last_completed_audit_period, unit `month`): the month that
    ended on the last first-of-the-month strictly before `before`."""
    end = datetime.datetime(before.year, before.month, 1)
    if end >= before:
        end = _month_before(end)
    return _month_before(end), end


def _month_before(day: datetime.datetime) -> datetime.datetime:
    return datetime.datetime(day.year - 1, 12, 1) if day.month == 1 else datetime.datetime(day.year, day.month - 1, 1)


def parse_before(text: str) -> datetime.datetime:
    """Nova's two accepted spellings of the timestamp; anything else a 400."""
    try:
        return datetime.datetime.strptime(text, "%Y-%m-%d %H:%M:%S.%f" if "." in text else "%Y-%m-%d %H:%M:%S")
    except ValueError:
        raise errors.Invalid(f"Invalid timestamp for date {text}") from None


async def _task_logs(request: web.Request, policy: str, before: datetime.datetime) -> dict[str, Any]:
    ctx = authorize(request, policy)
    begin, end = last_completed_period(before)
    hosts = sorted({spec.host for spec, _ in await services(request, ctx) if spec.kind == "compute"})
    # no compute runs the usage audit (module docstring): no task log, so no host is done or running
    return {"period_beginning": str(begin), "period_ending": str(end), "num_hosts": len(hosts),
            "num_hosts_done": 0, "num_hosts_running": 0, "num_hosts_not_run": len(hosts), "hosts_not_run": hosts,
            "total_instances": 0, "total_errors": 0,
            "overall_status": f"{'ALL' if not hosts else f'0 of {len(hosts)}'} hosts done. 0 errors.", "log": {}}


async def index(request: web.Request) -> web.Response:
    return web.json_response({"instance_usage_audit_logs": await _task_logs(
        request, LIST, datetime.datetime.now(datetime.UTC).replace(tzinfo=None))})


async def show(request: web.Request) -> web.Response:
    authorize(request, SHOW)  # a member's 403 before a bad timestamp's 400, as Nova
    before = parse_before(request.match_info["before"])
    return web.json_response({"instance_usage_audit_log": await _task_logs(request, SHOW, before)})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/v2.1/os-instance_usage_audit_log", index)
    app.router.add_get("/v2.1/os-instance_usage_audit_log/{before}", show)
