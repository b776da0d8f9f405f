"""libvirt's domain schema check, compiled once per process.

`defineXMLFlags(xml, VIR_DOMAIN_DEFINE_VALIDATE)` makes libvirt read and compile
domain.rng (and the dozens of files it includes) on every define: 11.5 ms of CPU per
boot measured here, more than everything else a compute does for a test:/// guest.
`define` checks the document against the same schema file with the same library
(libxml2, which libvirt validates with), compiled once: ~0.25 ms per check. Where
the schema or libxml2 cannot be found it passes libvirt's own flag instead: the
same verdict, only slower.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import threading
from typing import Any

import libvirt  # type: ignore[import-untyped]

LOG = logging.getLogger(__name__)
SCHEMA_DIRS = ("/usr/share/libvirt/schemas", "/usr/local/share/libvirt/schemas")
_PARSE_FLAGS = 1 << 11 | 1 << 5 | 1 << 6  # XML_PARSE_NONET | NOERROR | NOWARNING


class DomainXMLInvalid(ValueError):
    """The domain XML does not pass libvirt's schema (nothing was defined)."""


class _XmlError(ctypes.Structure):  # the leading fields of libxml2's xmlError (stable ABI)
    _fields_ = [("domain", ctypes.c_int), ("code", ctypes.c_int), ("message", ctypes.c_char_p)]


_ERROR_FUNC = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.POINTER(_XmlError))


class _Schema:
    """A compiled RelaxNG schema. One check at a time (a lock): libxml2 does not promise
    that one compiled schema may validate in several threads at once."""

    def __init__(self, lib: Any, path: str) -> None:
        self.lib, self.path = lib, path
        self._lock = threading.Lock()
        parser = lib.xmlRelaxNGNewParserCtxt(path.encode())
        try:
            self._schema = lib.xmlRelaxNGParse(parser)
        finally:
            lib.xmlRelaxNGFreeParserCtxt(parser)
        if not self._schema:
            raise OSError(f"libxml2 could not compile {path}")

    def check(self, xml: str) -> None:
        data = xml.encode()
        messages: list[str] = []

        def collect(_user: Any, err: Any) -> None:
            if err and err.contents.message:
                messages.append(err.contents.message.decode(errors="replace").strip())

        callback = _ERROR_FUNC(collect)
        with self._lock:
            doc = self.lib.xmlReadMemory(data, len(data), b"domain.xml", None, _PARSE_FLAGS)
            if not doc:
                raise DomainXMLInvalid("domain XML is not well-formed")
            ctxt = self.lib.xmlRelaxNGNewValidCtxt(self._schema)
            try:
                self.lib.xmlRelaxNGSetValidStructuredErrors(ctxt, callback, None)
                rc = self.lib.xmlRelaxNGValidateDoc(ctxt, doc)
            finally:
                self.lib.xmlRelaxNGFreeValidCtxt(ctxt)
                self.lib.xmlFreeDoc(doc)
        if rc != 0:  # worded as libvirt words the same refusal
            raise DomainXMLInvalid("XML document failed to validate against schema: Unable to validate doc "
                                   f"against {self.path}\n" + "".join(m + "\n" for m in messages))


def load(dirs: tuple[str, ...] = SCHEMA_DIRS) -> _Schema | None:
    """Compile domain.rng from the first of `dirs` that has it; None if it or libxml2 is missing."""
    path = next((p for d in dirs if os.path.isfile(p := os.path.join(d, "domain.rng"))), None)
    name = ctypes.util.find_library("xml2")
    if path is None or name is None:
        LOG.info("libvirt's domain.rng or libxml2 not found: libvirt validates each define itself")
        return None
    lib = ctypes.CDLL(name)
    vp, cp = ctypes.c_void_p, ctypes.c_char_p
    for fn, res, args in (("xmlRelaxNGNewParserCtxt", vp, [cp]), ("xmlRelaxNGParse", vp, [vp]),
                          ("xmlRelaxNGFreeParserCtxt", None, [vp]), ("xmlRelaxNGNewValidCtxt", vp, [vp]),
                          ("xmlRelaxNGFreeValidCtxt", None, [vp]), ("xmlRelaxNGValidateDoc", ctypes.c_int, [vp, vp]),
                          ("xmlRelaxNGSetValidStructuredErrors", None, [vp, _ERROR_FUNC, vp]),
                          ("xmlReadMemory", vp, [cp, ctypes.c_int, cp, cp, ctypes.c_int]),
                          ("xmlFreeDoc", None, [vp])):
        getattr(lib, fn).restype, getattr(lib, fn).argtypes = res, args
    try:
        return _Schema(lib, path)
    except OSError as exc:
        LOG.warning("%s: libvirt validates each define itself", exc)
        return None


_schema: _Schema | None = None
_loaded = False
_load_lock = threading.Lock()


def schema() -> _Schema | None:
    """The process's compiled domain schema (compiled on first use), None if unavailable."""
    global _schema, _loaded
    with _load_lock:
        if not _loaded:
            _schema, _loaded = load(), True
    return _schema


def define(conn: libvirt.virConnect, xml: str) -> libvirt.virDomain:
    """defineXML after checking `xml` against libvirt's domain schema (blocking: call it in a
    libvirt thread). Raises DomainXMLInvalid, defining nothing, when the schema refuses it."""
    checker = schema()
    if checker is None:
        return conn.defineXMLFlags(xml, libvirt.VIR_DOMAIN_DEFINE_VALIDATE)
    checker.check(xml)
    return conn.defineXML(xml)
