"""EC2 error codes and how the one error tree (cells.errors) maps onto them."""
from __future__ import annotations

from cells import errors

# code -> HTTP status; anything not listed is a client error (400), as EC2 answers
_STATUS = {"AuthFailure": 401, "SignatureDoesNotMatch": 403, "RequestExpired": 400, "UnauthorizedOperation": 403,
           "InternalError": 500, "Unavailable": 503}


class Ec2Error(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message

    @property
    def status(self) -> int:
        return _STATUS.get(self.code, 400)


_INTERNAL = "An internal error occurred"
_SERVER_SIDE = {"InsufficientInstanceCapacity": "There is not enough capacity to fulfill your request.",
                "Unavailable": "The service is unavailable. Please try again shortly."}


def from_cellcloud(exc: errors.CellcloudError) -> Ec2Error:
    """The EC2 code for an error of the tree (by class, most specific first)."""
    table: list[tuple[type[errors.CellcloudError], str]] = [
        (errors.InstanceNotFound, "InvalidInstanceID.NotFound"), (errors.ImageNotFound, "InvalidAMIID.NotFound"),
        (errors.FlavorNotFound, "InvalidParameterValue"), (errors.InstanceInvalidState, "IncorrectInstanceState"),
        (errors.QuotaExceeded, "InstanceLimitExceeded"), (errors.NoValidHost, "InsufficientInstanceCapacity"),
        (errors.Forbidden, "UnauthorizedOperation"), (errors.Unauthorized, "AuthFailure"),
        (errors.Invalid, "InvalidParameterValue"), (errors.Conflict, "IncorrectState"),
        (errors.NotFound, "InvalidParameterValue"), (errors.RpcError, "Unavailable"),
    ]
    for cls, code in table:
        if isinstance(exc, cls):
            if code == "InstanceLimitExceeded" and exc.code == "keypair_limit_exceeded":
                code = "ResourceLimitExceeded"
            # a 5xx's text may name hosts, addresses or what a peer raised: EC2 clients get a fixed one
            return Ec2Error(code, exc.message if exc.http_status < 500 else _SERVER_SIDE.get(code, _INTERNAL))
    return Ec2Error("InternalError", exc.message if exc.http_status < 500 else _INTERNAL)
