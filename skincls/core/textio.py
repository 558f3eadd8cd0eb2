"""Reading users' text files as they really are: Korean Windows encodings, hostile YAML, and
file names in either Unicode normal form.

- :func:`read_text`: UTF-8 (with or without BOM), UTF-16 with BOM, and CP949/EUC-KR (what Excel
  and Notepad write on Korean Windows); anything else is one error naming the file.
- :func:`load_yaml`: safe YAML with duplicate keys refused (key and line) and alias expansion
  bounded, so a "billion laughs" file is refused in milliseconds.
- :func:`find_file`: a path as written in a manifest, found whether the disk stores its name in
  NFC (Linux, Windows) or NFD (macOS) form.
"""

from __future__ import annotations

import codecs
import os
import unicodedata
from pathlib import Path
from typing import Any

import yaml

from skincls.core.errors import SkinclsError

MAX_YAML_NODES = 100_000
"""Largest YAML document accepted, counted with every alias expanded."""

_BOMS = (
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)


def decode_text(raw: bytes, origin: str) -> str:
    """Text of ``raw`` bytes: BOM-marked UTF-8/UTF-16, else UTF-8, else CP949 (EUC-KR)."""
    for bom, encoding in _BOMS:
        if raw.startswith(bom):
            try:
                return raw.decode(encoding)
            except UnicodeDecodeError as err:
                raise SkinclsError(
                    f"{origin}: starts with a {encoding} byte-order mark but is not valid "
                    f"{encoding} at byte {err.start}"
                ) from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as utf8_err:
        try:
            return raw.decode("cp949")
        except UnicodeDecodeError:
            raise SkinclsError(
                f"{origin}: not text in UTF-8, UTF-16 (with BOM) or CP949/EUC-KR (first bad "
                f"byte 0x{raw[utf8_err.start]:02x} at offset {utf8_err.start}); save it as UTF-8"
            ) from None


def read_text(path: str | Path, what: str = "") -> str:
    """Decoded text of ``path`` (see :func:`decode_text`); ``what`` prefixes messages (an option)."""
    origin = f"{what} {path}".strip()
    try:
        raw = Path(path).read_bytes()
    except OSError as err:
        raise SkinclsError(f"{origin}: cannot read: {err.strerror or err}") from None
    text = decode_text(raw, origin)
    if "\x00" in text:
        raise SkinclsError(f"{origin}: holds NUL characters; is it a binary file?")
    return text


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys."""

    def construct_mapping(self, node, deep=False):
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if isinstance(key_node, yaml.ScalarNode):
                key = self.construct_scalar(key_node)
                line = key_node.start_mark.line + 1
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        None,
                        None,
                        f"duplicate key {key!r} at line {line} (first at line {seen[key]})",
                        key_node.start_mark,
                    )
                seen[key] = line
        return super().construct_mapping(node, deep=deep)


def _expanded_size(node: yaml.Node, memo: dict[int, int], limit: int) -> int:
    """Number of nodes with every alias expanded; stops counting past ``limit``."""
    key = id(node)
    if key in memo:
        return memo[key]
    memo[key] = limit + 1  # a cycle counts as too large
    total = 1
    if isinstance(node, yaml.SequenceNode):
        children = node.value
    elif isinstance(node, yaml.MappingNode):
        children = [n for pair in node.value for n in pair]
    else:
        children = []
    for child in children:
        total += _expanded_size(child, memo, limit)
        if total > limit:
            break
    memo[key] = total
    return total


def load_yaml(text: str, origin: str) -> Any:
    """Parse YAML safely: duplicate keys and documents over :data:`MAX_YAML_NODES` nodes (aliases
    expanded) are errors naming ``origin`` and the line."""
    loader = None
    try:
        loader = _StrictLoader(text)
        node = loader.get_single_node()
        if node is None:
            return None
        if _expanded_size(node, {}, MAX_YAML_NODES) > MAX_YAML_NODES:
            raise SkinclsError(
                f"{origin}: refused: more than {MAX_YAML_NODES:,} values once its aliases "
                "(&anchor / *alias) are expanded"
            )
        return loader.construct_document(node)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}:" if mark else ""
        problem = getattr(err, "problem", None) or str(err)
        raise SkinclsError(f"{origin}:{where} invalid YAML: {problem}") from None
    finally:
        if loader is not None:
            loader.dispose()


def find_file(path: str | Path) -> Path | None:
    """``path`` if it is a file, else the same path with each name matched in any Unicode normal
    form (a CSV written on macOS lists NFD names; Linux stores what it was given); else None."""
    p = Path(path)
    if p.is_file():
        return p
    for form in ("NFC", "NFD"):
        alt = Path(unicodedata.normalize(form, str(p)))
        if alt.is_file():
            return alt
    current = Path(p.anchor) if p.is_absolute() else Path(".")
    for part in p.parts[1:] if p.is_absolute() else p.parts:
        if part in (".", ".."):
            current = current / part
            continue
        nfc = unicodedata.normalize("NFC", part)
        candidate = current / part
        if not candidate.exists():
            try:
                names = os.listdir(current)
            except OSError:
                return None
            match = next((n for n in names if unicodedata.normalize("NFC", n) == nfc), None)
            if match is None:
                return None
            candidate = current / match
        current = candidate
    return current if current.is_file() else None


def same_file_key(path: Path) -> str:
    """A spelling-independent name of a file: its real path in NFC form."""
    return unicodedata.normalize("NFC", os.path.realpath(path))
