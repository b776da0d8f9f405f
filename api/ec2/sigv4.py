"""AWS Signature Version 4 verification (the header form boto3 sends).

Pure functions: the caller gives the method, the raw path and query, the
headers, the body and the secret of the access key named in the
Authorization header. Nothing here touches the network or a DB.
"""
from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qsl, quote

ALGORITHM = "AWS4-HMAC-SHA256"
MAX_SKEW = timedelta(minutes=15)  # as AWS: a signature older or newer than this is refused


class SignatureError(Exception):
    """code: the EC2 error code to answer with."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


@dataclass(frozen=True)
class Authorization:
    access_key: str
    date: str  # yyyymmdd
    region: str
    service: str
    signed_headers: tuple[str, ...]
    signature: str

    @property
    def scope(self) -> str:
        return f"{self.date}/{self.region}/{self.service}/aws4_request"


def parse_authorization(header: str | None) -> Authorization:
    if not header:
        raise SignatureError("AuthFailure", "AWS was not able to validate the provided access credentials")
    algorithm, _, rest = header.strip().partition(" ")
    if algorithm != ALGORITHM:
        raise SignatureError("AuthFailure", f"Unsupported signature algorithm {algorithm!r}: use {ALGORITHM}")
    parts: dict[str, str] = {}
    for item in rest.split(","):
        key, sep, value = item.strip().partition("=")
        if sep:
            parts[key] = value
    try:
        credential = parts["Credential"].split("/")
        access, date, region, service, terminal = credential
        signed = tuple(parts["SignedHeaders"].split(";"))
        signature = parts["Signature"]
    except (KeyError, ValueError):
        raise SignatureError("AuthFailure", "Malformed Authorization header") from None
    if terminal != "aws4_request" or not access or not signature:
        raise SignatureError("AuthFailure", "Malformed Authorization header credential scope")
    return Authorization(access, date, region, service, signed, signature)


def _canonical_query(raw_query: str) -> str:
    pairs = parse_qsl(raw_query, keep_blank_values=True)
    encoded = sorted((quote(k, safe="-_.~"), quote(v, safe="-_.~")) for k, v in pairs)
    return "&".join(f"{k}={v}" for k, v in encoded)


def canonical_request(method: str, raw_path: str, raw_query: str, headers: Mapping[str, str],
                      signed_headers: tuple[str, ...], payload_hash: str) -> str:
    lowered = {k.lower(): v for k, v in headers.items()}
    canonical_headers = "".join(f"{h}:{' '.join(lowered.get(h, '').split())}\n" for h in signed_headers)
    return "\n".join([method.upper(), raw_path or "/", _canonical_query(raw_query), canonical_headers,
                      ";".join(signed_headers), payload_hash])


def signing_key(secret: str, date: str, region: str, service: str) -> bytes:
    key = ("AWS4" + secret).encode("utf-8")
    for part in (date, region, service, "aws4_request"):
        key = hmac.new(key, part.encode("utf-8"), hashlib.sha256).digest()
    return key


def signature(secret: str, auth: Authorization, amz_date: str, creq: str) -> str:
    to_sign = "\n".join([ALGORITHM, amz_date, auth.scope, hashlib.sha256(creq.encode("utf-8")).hexdigest()])
    return hmac.new(signing_key(secret, auth.date, auth.region, auth.service), to_sign.encode("utf-8"),
                    hashlib.sha256).hexdigest()


def verify(auth: Authorization, secret: str, method: str, raw_path: str, raw_query: str,
           headers: Mapping[str, str], body: bytes, now: datetime | None = None) -> None:
    """Raise SignatureError unless the request is signed by `secret`, recently, for service ec2."""
    lowered = {k.lower(): v for k, v in headers.items()}
    amz_date = lowered.get("x-amz-date", "")
    try:
        when = datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    except ValueError:
        raise SignatureError("AuthFailure", "X-Amz-Date is missing or malformed") from None
    if not amz_date.startswith(auth.date):
        raise SignatureError("SignatureDoesNotMatch", "The credential scope date does not match X-Amz-Date")
    if abs((now or datetime.now(UTC)) - when) > MAX_SKEW:
        raise SignatureError("RequestExpired", f"Request has expired: X-Amz-Date {amz_date} is more than "
                                               "15 minutes from the server's time")
    if auth.service != "ec2":
        raise SignatureError("SignatureDoesNotMatch", f"Credential should be scoped to service ec2, not "
                                                      f"{auth.service!r}")
    if "host" not in auth.signed_headers:
        raise SignatureError("SignatureDoesNotMatch", "The Host header must be signed")
    payload_hash = hashlib.sha256(body).hexdigest()
    claimed = lowered.get("x-amz-content-sha256")
    if claimed is not None and claimed != payload_hash:
        raise SignatureError("SignatureDoesNotMatch", "The body does not match X-Amz-Content-Sha256")
    creq = canonical_request(method, raw_path, raw_query, headers, auth.signed_headers, payload_hash)
    expected = signature(secret, auth, amz_date, creq)
    if not hmac.compare_digest(expected, auth.signature):
        raise SignatureError("SignatureDoesNotMatch", "The request signature we calculated does not match the "
                                                      "signature you provided. Check your AWS Secret Access Key "
                                                      "and signing method.")
