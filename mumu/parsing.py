"""Per-item parsing of untrusted text: CSV records and JSON documents with bounds.

One bad record never ends a file: ``csv_records`` yields each record with its line number, or a
failure for a record that cannot be read. A quote left open would otherwise swallow every row
after it (or end the whole file with ``field larger than field limit``); here a record may span at
most ``max_lines`` physical lines and hold fields of at most ``max_field`` characters, and when it
does not, its first line is reported and reading resumes on the next line, so the rows the quote
swallowed are read on their own. ``load_json`` caps the size and the nesting depth (a deeply
nested document ends in ``RecursionError`` inside ``json``) and raises ``ValueError`` for all of it.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator

MAX_FIELD_CHARS = 65536
MAX_JSON_BYTES = 16 * 1024 * 1024
MAX_JSON_DEPTH = 64


class _Lines:
    """Feeds lines to csv.reader, stopping when one record runs past ``max_lines`` lines."""

    def __init__(self, lines: list[str], start: int, max_lines: int, max_field: int):
        self.lines, self.pos, self.max_lines, self.max_field = lines, start, max_lines, max_field
        self.record_start = start
        self.overrun = False

    def __iter__(self):
        return self

    def __next__(self) -> str:
        if self.pos >= len(self.lines):
            raise StopIteration
        fed = self.pos - self.record_start
        if fed >= self.max_lines or sum(len(x) for x in self.lines[self.record_start:self.pos]) > self.max_field:
            self.overrun = True
            raise StopIteration
        line = self.lines[self.pos]
        self.pos += 1
        return line


def csv_records(text: str, name: str, max_lines: int = 1, max_field: int = MAX_FIELD_CHARS,
                suspect=None, **fmt) -> Iterator[tuple[int, list[str] | None, str | None]]:
    """Yield ``(line number, fields, None)`` per record, or ``(line number, None, why)`` for a bad one.

    ``max_lines`` is how many physical lines one record may span (1 for formats that never hold
    newlines in a field, more where quoted fields may). ``suspect(fields, n_lines)``, when given,
    marks a record that spans lines but cannot be right (e.g. the wrong field count) as a quote
    that swallowed lines: it is reported the same way and reading resumes on its next line.
    """
    fmt.setdefault("strict", True)  # a quote still open at the end of the text is an error, not a field
    lines = text.splitlines(keepends=True)
    pos = 0
    while pos < len(lines):
        feed = _Lines(lines, pos, max_lines, max_field)
        reader = csv.reader(feed, **fmt)
        bad: str | None = None
        while True:
            feed.record_start = feed.pos
            try:
                row = next(reader)
            except StopIteration:
                if feed.overrun:
                    bad = "overrun"
                break
            except csv.Error as e:
                bad = str(e)
                break
            if feed.overrun:
                bad = "overrun"
                break
            if any(len(c) > max_field for c in row):
                bad = f"a field longer than {max_field} characters"
                break
            if suspect is not None and feed.pos - feed.record_start > 1 and suspect(row, feed.pos - feed.record_start):
                bad = "overrun"
                break
            yield feed.record_start + 1, row, None
        if bad is None:
            return
        lineno = feed.record_start + 1
        if '"' in lines[feed.record_start] or bad == "overrun" or "field limit" in bad:
            why = (f"{name}:{lineno}: an unterminated quote at line {lineno} may have swallowed the rows after it "
                   f"(a record may span at most {max_lines} line(s) and {max_field} characters); "
                   f"line {lineno} is skipped and the following lines are read on their own")
        else:
            why = f"{name}:{lineno}: unreadable CSV record: {bad}"
        yield lineno, None, why
        pos = feed.record_start + 1


def csv_dict_records(text: str, name: str, max_lines: int = 50, max_field: int = MAX_FIELD_CHARS,
                     **fmt) -> Iterator[tuple[int, dict | None, str | None]]:
    """Like ``csv.DictReader`` over ``csv_records``: the first good record is the header."""
    header: list[str] | None = None

    def suspect(row, n_lines):
        return header is not None and len(row) != len(header)

    for lineno, row, why in csv_records(text, name, max_lines, max_field, suspect=suspect, **fmt):
        if why is not None:
            yield lineno, None, why
            continue
        if not row:
            continue
        if header is None:
            header = row
            continue
        d = dict(zip(header, row))
        for k in header[len(row):]:
            d[k] = None
        if len(row) > len(header):
            d[None] = row[len(header):]
        yield lineno, d, None


def _depth(text: str, max_depth: int) -> int:
    """Deepest bracket nesting outside strings (a linear scan, no recursion)."""
    depth = deepest = 0
    in_str = esc = False
    for ch in text:
        if in_str:
            if esc:
                esc = False
            elif ch == "\\":
                esc = True
            elif ch == '"':
                in_str = False
        elif ch == '"':
            in_str = True
        elif ch in "[{":
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > max_depth:
                    return deepest
        elif ch in "]}":
            depth -= 1
    return deepest


def load_json(data: bytes | str, name: str, max_bytes: int = MAX_JSON_BYTES, max_depth: int = MAX_JSON_DEPTH):
    """Parse untrusted JSON; ``ValueError`` (with ``name``) for too large, too deep, not UTF-8 or invalid."""
    size = len(data)
    if size > max_bytes:
        raise ValueError(f"{name}: {size} bytes of JSON, more than the limit of {max_bytes}")
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8-sig")
        except UnicodeDecodeError as e:
            raise ValueError(f"{name} is not UTF-8 text ({e.reason} at byte {e.start})") from None
    if _depth(data, max_depth) > max_depth:
        raise ValueError(f"{name}: JSON nested deeper than {max_depth} levels")
    try:
        return json.loads(data)
    except RecursionError:
        raise ValueError(f"{name}: JSON nested too deeply to parse") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{name}: invalid JSON: {e}") from None


def _yaml_node_count(root, max_nodes: int) -> int:
    """Nodes of a composed YAML graph as the constructed document would hold them: an alias
    reached again counts again (so ``&a [*b, *b, ...]`` chains multiply). The walk stops as soon
    as the count passes ``max_nodes``, so a "billion laughs" costs ``max_nodes`` steps, and an
    alias cycle (a node holding itself) ends there too."""
    import yaml

    count, stack = 0, [root]
    while stack:
        node = stack.pop()
        count += 1
        if count > max_nodes:
            return count
        if isinstance(node, yaml.SequenceNode):
            stack.extend(node.value)
        elif isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                stack.append(key)
                stack.append(value)
    return count


def load_yaml(data: bytes | str, name: str, max_nodes: int):
    """``yaml.safe_load`` of untrusted YAML whose alias-expanded size is bounded.

    The document is composed first (aliases stay references to one node, so composing is linear
    in the text); its nodes are counted with every alias expanded, and a document of more than
    ``max_nodes`` is refused with ``ValueError`` naming ``limits.max_yaml_nodes`` before any
    object is built. Malformed YAML raises PyYAML's own ``yaml.YAMLError`` (``ReaderError`` for
    text that is not UTF-8 / UTF-16); nesting too deep to compose is a ``ValueError``.
    """
    import yaml

    loader = yaml.SafeLoader(data)
    try:
        try:
            node = loader.get_single_node()
        except RecursionError:
            raise ValueError(f"{name}: YAML nested too deeply to parse") from None
        if node is None:
            return None
        n = _yaml_node_count(node, max_nodes)
        if n > max_nodes:
            raise ValueError(f"{name}: more than {max_nodes} YAML nodes once its aliases are expanded "
                             f"(limits.max_yaml_nodes = {max_nodes})")
        try:
            return loader.construct_document(node)
        except RecursionError:
            raise ValueError(f"{name}: YAML nested too deeply to build") from None
    finally:
        loader.dispose()


class ReadRefused(ValueError):
    """A file a bounded read refuses: missing, over its size limit or unreadable (one line)."""


def read_bounded(path: str, max_bytes: int, limit_setting: str) -> bytes:
    """The bytes of ``path`` (a local path or an fsspec URL), never more than ``max_bytes`` read;
    ``ReadRefused`` names ``limit_setting`` when the file is over it."""
    import fsspec

    try:
        fs, p = fsspec.core.url_to_fs(str(path))
        if not fs.isfile(p):
            raise ReadRefused(f"{path} does not exist")
        size = fs.size(p)
        if size is not None and size > max_bytes:
            raise ReadRefused(f"{path} is {size} bytes, over {limit_setting} = {max_bytes}")
        with fs.open(p, "rb") as f:
            data = f.read(max_bytes + 1)
    except ReadRefused:
        raise
    except (OSError, ValueError, ImportError) as e:
        raise ReadRefused(f"{path} cannot be read ({type(e).__name__}: {e})".replace("\n", " ")) from None
    if len(data) > max_bytes:  # a file that grew, or one whose size the file system does not tell
        raise ReadRefused(f"{path} is over {limit_setting} = {max_bytes} bytes")
    return data
