"""S3's XML: building responses and parsing the few request bodies S3 has.

Responses are built from nested tuples, ``("Name", value-or-children)``, so handlers
read like the XML they produce; a third item, when there is one, holds the element's
attributes (an ACL's ``Grantee`` has ``xsi:type``). Request bodies are size-bounded by
the caller and parsed by defusedxml with DTDs forbidden: the parser itself refuses a
DOCTYPE, after decoding, so no encoding (UTF-16, ...) gets an entity declaration or an
external reference past it, and S3's bodies never have one.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import TypeAlias

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring

from .errors import S3Error

S3_NS = "http://s3.amazonaws.com/doc/2006-03-01/"

Value: TypeAlias = "str | int | bool | Sequence[Node] | None"
Node: TypeAlias = tuple[str, Value] | tuple[str, Value, Mapping[str, str]]


def iso8601(ms: int) -> str:
    """S3's timestamp format in XML: 2009-10-12T17:50:30.000Z."""
    t = datetime.fromtimestamp(ms / 1000, UTC)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


def _text(value: str | int | bool) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _build(parent: ET.Element, nodes: Iterable[Node]) -> None:
    for node in nodes:
        name, value = node[0], node[1]
        if value is None:
            continue
        child = ET.SubElement(parent, name, node[2] if len(node) == 3 else {})
        if isinstance(value, str | int | bool):
            child.text = _text(value)
        else:
            _build(child, value)


def document(root: str, nodes: Iterable[Node] | str, *, namespace: bool = True) -> bytes:
    """An XML document; ``None`` values are left out, so optional elements are easy.
    ``nodes`` may be the root's text instead (GetBucketLocation's answer is one)."""
    el = ET.Element(root, {"xmlns": S3_NS} if namespace else {})
    if isinstance(nodes, str):
        el.text = nodes
    else:
        _build(el, nodes)
    return b'<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(el, encoding="utf-8",
                                                                     xml_declaration=False)


def parse(body: bytes) -> ET.Element:
    """The root of a request body, or MalformedXML."""
    try:
        root: ET.Element = fromstring(body, forbid_dtd=True)
    except (ET.ParseError, DefusedXmlException):
        raise S3Error("MalformedXML") from None
    return root


def local(tag: str) -> str:
    """A tag without its namespace: clients send S3 bodies with and without one."""
    return tag.rpartition("}")[2]


def children(el: ET.Element, name: str) -> list[ET.Element]:
    return [c for c in el if local(c.tag) == name]


def child_text(el: ET.Element, name: str) -> str | None:
    found = children(el, name)
    return (found[0].text or "") if found else None
