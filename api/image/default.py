"""The default image "tiny-raw": a small deterministic raw disk.

1 MiB, its first sector a readable marker, so a node (or a guest reading
/dev/vda) can check it got these exact bits. Same bytes on every cluster, so
the same content address and checksums.
"""
from __future__ import annotations

NAME = "tiny-raw"
SIZE = 1 << 20
SECTOR = 512
MARKER = b"CELLCLOUD tiny-raw v1: a 1 MiB raw test disk from the API cell's image store\n"


def tiny_raw() -> bytes:
    first = MARKER.ljust(SECTOR, b"\0")
    last = b"CELLCLOUD tiny-raw end\n".ljust(SECTOR, b"\0")  # shows the download was not truncated
    return first + bytes(SIZE - 2 * SECTOR) + last
