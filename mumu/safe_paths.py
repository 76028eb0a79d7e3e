"""Paths and archives from untrusted sources that must stay inside a folder.

Source metadata (a Slakh ``metadata.yaml``, a Looperman sidecar) names files relative to a
folder, and release tarballs name their members; either may be wrong or hostile. Everything
that turns such a name into a filesystem path goes through here:

* ``safe_join(root, rel)`` refuses absolute names, ``..`` escapes and names whose resolved
  path (after following symlinks) leaves ``root``;
* ``safe_extract_tar(tar_path, dest)`` checks every member of an archive before extracting
  any, and refuses absolute names, ``..`` components, links whose target leaves ``dest`` or
  names no member of the archive, members written through a link, names longer than the file
  system takes, and devices or FIFOs. Python's ``data`` extraction filter is applied on top
  where this Python has it. ``max_bytes`` / ``max_ratio`` bound what the members' headers say
  they hold, checked while the headers are read, before anything is written.

Every refusal is an ``ArchiveError`` (a ``ValueError``) whose ``reason`` says what kind:
``unsafe_archive`` (a member that would escape or is not a plain file, folder or link),
``bad_archive`` (truncated or corrupt compression, a link to a missing member, a name too long)
or ``archive_too_large`` (over a bound). Faults of the machine (a full disk) are not archive
errors: they propagate as they are (``mumu.faults``).
"""

from __future__ import annotations

import contextlib
import errno
import lzma
import os
import posixpath
import tarfile
import zlib

from mumu.failures import ItemError
from mumu.faults import is_environment_fault

NAME_MAX = 255  # bytes of one path component on the usual Linux file systems
PATH_MAX = 4096


class ArchiveError(ItemError, ValueError):
    """An archive that cannot be extracted safely; ``reason`` names the kind (a failure-row reason)."""

    reason = "bad_archive"

    def __init__(self, detail: str, reason: str | None = None):
        super().__init__(reason, detail)


class UnsafeArchive(ArchiveError):
    reason = "unsafe_archive"


class ArchiveTooLarge(ArchiveError):
    reason = "archive_too_large"


# what a damaged compressed stream or tar structure raises while it is read
READ_ERRORS = (tarfile.TarError, EOFError, zlib.error, lzma.LZMAError, OSError, KeyError)


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def _short(name: str, limit: int = 120) -> str:
    """``repr(name)``, shortened in the middle when long (a 4 KB member name stays readable)."""
    r = repr(name)
    return r if len(r) <= limit else f"{r[: limit // 2]}...{r[-limit // 2:]} ({len(name)} characters)"


def safe_join(root: str | os.PathLike, rel: str | os.PathLike) -> str:
    """``root/rel`` resolved, or ValueError when ``rel`` would lead outside ``root``.

    The returned path is the resolved (``realpath``) one, so a caller that opens it does not
    follow a symlink out of ``root`` afterwards.
    """
    rel_s = os.fspath(rel)
    if "\x00" in rel_s:
        raise ValueError(f"path {rel_s!r} holds a NUL byte")
    if os.path.isabs(rel_s) or rel_s.startswith(("/", "\\")):
        raise ValueError(f"path {rel_s!r} is absolute; expected a path relative to {os.fspath(root)!r}")
    norm = posixpath.normpath(rel_s.replace(os.sep, "/")) if rel_s else "."
    if norm == ".." or norm.startswith("../"):
        raise ValueError(f"path {rel_s!r} climbs out of {os.fspath(root)!r} with '..'")
    real_root = os.path.realpath(os.fspath(root))
    resolved = os.path.realpath(os.path.join(real_root, norm))
    if not _inside(resolved, real_root):
        raise ValueError(f"path {rel_s!r} resolves to {resolved!r}, outside {real_root!r} (a symlink leads out)")
    return resolved


def _member_parts(name: str) -> list[str]:
    return [p for p in name.replace("\\", "/").split("/") if p not in ("", ".")]


def check_tar_members(members: list[tarfile.TarInfo], dest: str | None = None) -> None:
    """Raise ``ArchiveError`` naming the first bad member; extract nothing.

    ``dest`` (the folder extracted into) bounds the full path length of each member."""
    links: set[str] = set()  # normalised names of symlink/hardlink members
    present: set[str] = {""}  # every member name and every folder above one ("" is the root)
    earlier: set[str] = set()  # regular files (and hardlinks) seen so far, for hardlink targets
    dest_len = len(os.fsencode(dest)) + 1 if dest else 0
    for m in members:
        name = m.name
        if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
            raise UnsafeArchive(f"unsafe archive member {_short(name)}: absolute path")
        parts = _member_parts(name)
        if ".." in parts:
            raise UnsafeArchive(f"unsafe archive member {_short(name)}: '..' in its path")
        if not parts:
            if m.isdir():
                continue  # "./" itself
            raise UnsafeArchive(f"unsafe archive member {_short(name)}: empty name")
        if "\x00" in name:
            raise UnsafeArchive(f"unsafe archive member {_short(name)}: NUL byte in its name")
        longest = max(len(os.fsencode(p)) for p in parts)
        norm = "/".join(parts)
        if longest > NAME_MAX or dest_len + len(os.fsencode(norm)) >= PATH_MAX:
            raise ArchiveError(f"archive member {_short(name)}: its path is longer than the file system allows "
                               f"(a name of {longest} bytes, at most {NAME_MAX}; a path of "
                               f"{dest_len + len(os.fsencode(norm))} bytes, under {PATH_MAX})")
        for i in range(1, len(parts)):
            if "/".join(parts[:i]) in links:
                raise UnsafeArchive(f"unsafe archive member {_short(name)}: written through the link "
                                    f"{'/'.join(parts[:i])!r}")
            present.add("/".join(parts[:i]))
        present.add(norm)
        if m.ischr() or m.isblk() or m.isfifo() or m.isdev():
            raise UnsafeArchive(f"unsafe archive member {_short(name)}: device or FIFO")
        if m.issym():
            target = m.linkname
            if target.startswith(("/", "\\")):
                raise UnsafeArchive(f"unsafe archive member {_short(name)}: symlink to absolute path {target!r}")
            joined = posixpath.normpath(posixpath.join(posixpath.dirname(norm), target.replace("\\", "/")))
            if joined == ".." or joined.startswith("../"):
                raise UnsafeArchive(f"unsafe archive member {_short(name)}: symlink target {target!r} leaves "
                                    "the destination")
            links.add(norm)
        elif m.islnk():
            target = m.linkname
            tparts = _member_parts(target)
            if target.startswith(("/", "\\")) or ".." in tparts or not tparts:
                raise UnsafeArchive(f"unsafe archive member {_short(name)}: hardlink target {target!r} leaves "
                                    "the destination")
            if "/".join(tparts) not in earlier:  # tarfile links only to a file stored before the link
                raise ArchiveError(f"archive member {_short(name)}: hardlink to {target!r}, which is not a file "
                                   "stored before it in the archive")
            links.add(norm)
            earlier.add(norm)
        elif m.isfile():
            earlier.add(norm)
        elif not m.isdir():
            raise UnsafeArchive(f"unsafe archive member {_short(name)}: unsupported member type {m.type!r}")
    for m in members:  # symlinks may name members stored after them
        if m.issym():
            norm = "/".join(_member_parts(m.name))
            joined = posixpath.normpath(posixpath.join(posixpath.dirname(norm), m.linkname.replace("\\", "/")))
            joined = "" if joined == "." else joined
            if joined not in present:
                raise ArchiveError(f"archive member {_short(m.name)}: symlink to {m.linkname!r}, which is not in "
                                   "the archive")


def _read_members(tf: tarfile.TarFile, tar_path: str, max_bytes: int | None,
                  max_ratio: float | None) -> list[tarfile.TarInfo]:
    """The members' headers, in order; the bounds are checked as each header is read, so a
    header that claims too much stops the reading there."""
    archive_size = os.path.getsize(tar_path)
    ratio_cap = None if max_ratio is None else max_ratio * max(archive_size, 1)
    members, total = [], 0
    while True:
        m = tf.next()
        if m is None:
            return members
        members.append(m)
        if m.isfile():
            total += max(0, m.size)
        if max_bytes is not None and total > max_bytes:
            raise ArchiveTooLarge(f"{os.path.basename(tar_path)}: its members hold more than {total} bytes (up to "
                                  f"{_short(m.name)}), over limits.max_extracted_bytes = {max_bytes}")
        if ratio_cap is not None and total > ratio_cap:
            raise ArchiveTooLarge(f"{os.path.basename(tar_path)}: its members hold more than {total} bytes (up to "
                                  f"{_short(m.name)}), over limits.max_extract_ratio = {max_ratio:g} times the "
                                  f"archive's {archive_size} bytes")


def is_archive_fault(e: BaseException) -> bool:
    """True when ``e`` says the archive is damaged, not the machine: stream and tar errors, and
    OSErrors without an errno (``gzip.BadGzipFile``) or about a member's name."""
    if is_environment_fault(e):
        return False
    if isinstance(e, OSError) and not isinstance(e, tarfile.TarError):
        return e.errno in (None, errno.ENAMETOOLONG, errno.EILSEQ, errno.EINVAL)
    return True


def _damaged(tar_path: str, e: BaseException) -> ArchiveError:
    if isinstance(e, OSError) and e.errno == errno.ENAMETOOLONG:
        return ArchiveError(f"{os.path.basename(tar_path)}: a member's path is longer than the file system allows: "
                            f"{_short(str(e.filename or ''))}")
    what = f"{type(e).__name__}: {e}"
    return ArchiveError(f"{os.path.basename(tar_path)} is truncated or corrupt ({what[:300]})")


@contextlib.contextmanager
def _damage_is_archive_error(tar_s: str):
    """A damaged archive met while reading or extracting is ``bad_archive``; an ArchiveError passes
    as it is, and a fault of the machine (a full disk) is raised unchanged."""
    try:
        yield
    except ArchiveError:
        raise
    except READ_ERRORS as e:
        if not is_archive_fault(e):
            raise
        raise _damaged(tar_s, e) from e


def safe_extract_tar(tar_path: str | os.PathLike, dest: str | os.PathLike, max_bytes: int | None = None,
                     max_ratio: float | None = None) -> list[str]:
    """Extract a ``.tar`` / ``.tar.gz`` / ``.tar.bz2`` / ``.tar.xz`` into ``dest``.

    Every member is checked first; one bad member refuses the whole archive (``ArchiveError``
    naming it) and nothing is extracted. ``max_bytes`` bounds the sum of the member sizes and
    ``max_ratio`` that sum per byte of the archive (``archive_too_large``). A stream that turns
    out truncated or corrupt while extracting is ``bad_archive`` too (what was written so far
    stays in ``dest``: extract into a temporary folder to keep it clean). Returns the extracted
    member names, normalised and relative to ``dest``, in archive order.
    """
    tar_s, dest_s = os.fspath(tar_path), os.fspath(dest)
    os.makedirs(dest_s, exist_ok=True)
    try:
        tf = tarfile.open(tar_s, "r:*")
    except READ_ERRORS as e:
        if not is_archive_fault(e):
            raise
        raise ArchiveError(f"{tar_s} is not a readable tar archive: {type(e).__name__}: {str(e)[:300]}") from e
    with tf:
        with _damage_is_archive_error(tar_s):
            members = _read_members(tf, tar_s, max_bytes, max_ratio)
        real_dest = os.path.realpath(dest_s)
        check_tar_members(members, real_dest)
        for m in members:  # the destination itself may hold links already: resolve against it
            parts = _member_parts(m.name)
            if parts and not _inside(os.path.realpath(os.path.join(real_dest, *parts[:-1])), real_dest):
                raise UnsafeArchive(f"unsafe archive member {_short(m.name)}: its folder resolves outside "
                                    f"{real_dest!r}")
        with _damage_is_archive_error(tar_s):
            if hasattr(tarfile, "data_filter"):
                try:
                    tf.extractall(real_dest, members=members, filter="data")
                except tarfile.FilterError as e:
                    raise UnsafeArchive(f"unsafe archive member refused by the data filter: {e}") from e
            else:  # Python without extraction filters: our checks above are the guard
                tf.extractall(real_dest, members=members)
    return ["/".join(_member_parts(m.name)) for m in members if _member_parts(m.name)]
