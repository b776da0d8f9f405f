"""One error tree for every service. The wire carries `code` and `kwargs`;
the receiving side rebuilds the same class with `from_wire`."""
from __future__ import annotations

from typing import Any


class CellcloudError(Exception):
    code = "internal"
    http_status = 500
    msg = "An internal error occurred"

    def __init__(self, message: str | None = None, **kwargs: Any) -> None:
        self.kwargs = kwargs
        if message is None:
            try:
                message = self.msg.format(**kwargs)
            except (KeyError, IndexError):
                message = self.msg
        self.message = message
        super().__init__(message)

    def to_wire(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "kwargs": _plain(self.kwargs)}


def _plain(kwargs: dict[str, Any]) -> dict[str, Any]:
    return {k: v if isinstance(v, (str, int, float, bool, type(None))) else str(v) for k, v in kwargs.items()}


_BY_CODE: dict[str, type[CellcloudError]] = {}


def _register(cls: type[CellcloudError]) -> type[CellcloudError]:
    _BY_CODE[cls.code] = cls
    return cls


def from_wire(err: dict[str, Any]) -> CellcloudError:
    cls = _BY_CODE.get(str(err.get("code")), CellcloudError)
    exc = cls(str(err.get("message", "")), **dict(err.get("kwargs") or {}))
    if cls is CellcloudError:
        exc.code = str(err.get("code", "internal"))
    return exc


@_register
class Invalid(CellcloudError):
    code, http_status, msg = "invalid", 400, "Invalid input: {reason}"


@_register
class NotFound(CellcloudError):
    code, http_status, msg = "not_found", 404, "Resource not found"


@_register
class Conflict(CellcloudError):
    code, http_status, msg = "conflict", 409, "Conflict: {reason}"


@_register
class Forbidden(CellcloudError):
    code, http_status, msg = "forbidden", 403, "Policy does not allow this action"


@_register
class Unauthorized(CellcloudError):
    code, http_status, msg = "unauthorized", 401, "The request you have made requires authentication."


@_register
class QuotaExceeded(CellcloudError):
    code, http_status, msg = "quota_exceeded", 403, "Quota exceeded for {resource}: requested {requested}, limit {limit}"


@_register
class InstanceNotFound(NotFound):
    code, msg = "instance_not_found", "Instance {instance_id} could not be found."


@_register
class FlavorNotFound(NotFound):
    code, msg = "flavor_not_found", "Flavor {flavor_id} could not be found."


@_register
class ImageNotFound(NotFound):
    code, msg = "image_not_found", "Image {image_id} could not be found."


@_register
class InstanceInvalidState(Conflict):
    code, msg = "instance_invalid_state", "Cannot '{action}' instance {instance_id} while it is in {attr} {state}"


@_register
class NoValidHost(CellcloudError):
    code, http_status, msg = "no_valid_host", 500, "No valid host was found. {reason}"


@_register
class ImageChecksumMismatch(CellcloudError):
    code, msg = "image_checksum_mismatch", "Image {image_id} failed checksum verification: expected {expected}, got {actual}"


@_register
class SpawnFailed(CellcloudError):
    code, msg = "spawn_failed", "Failed to spawn instance {instance_id}: {reason}"


# --- messaging -----------------------------------------------------------

@_register
class RpcError(CellcloudError):
    code, http_status, msg = "rpc_error", 503, "Messaging failure: {reason}"


@_register
class RpcTimeout(RpcError):
    code, msg = "rpc_timeout", "No reply to {method} from {topic} within {timeout}s"


@_register
class NoLiveMember(RpcError):
    code, msg = "no_live_member", "No live member serves topic {topic}"


@_register
class DeadlineExpired(RpcError):
    code, msg = "deadline_expired", "Deadline of {method} passed before it could run"


@_register
class UnknownMethod(RpcError):
    code, http_status, msg = "unknown_method", 500, "Method {method} is not part of this service's RPC surface"


# --- compute node ---------------------------------------------------------

@_register
class HypervisorUnavailable(CellcloudError):
    code, http_status, msg = "hypervisor_unavailable", 503, "Hypervisor {uri} cannot be used on this host: {reason}"


@_register
class ImageDownloadFailed(CellcloudError):
    code, http_status, msg = "image_download_failed", 502, "Could not download image {image_id}: {reason}"



# --- cell services (conductor, scheduler, cell DB) -------------------------

@_register
class MarkerNotFound(Invalid):
    code, msg = "marker_not_found", "Marker {marker} could not be found."


@_register
class UnexpectedTaskState(Conflict):
    code = "unexpected_task_state"
    msg = "Unexpected task state for instance {instance_id}: expecting {expected} but the actual state is {actual}"


@_register
class UnexpectedDeletingTaskState(UnexpectedTaskState):
    code = "unexpected_deleting_task_state"


@_register
class MaxRetriesExceeded(NoValidHost):
    code, msg = "max_retries_exceeded", "Exceeded maximum number of retries. {reason}"


@_register
class DBSchemaTooNew(CellcloudError):
    code, msg = "db_schema_too_new", "Cell DB schema version {found} is newer than this code supports ({supported})"
