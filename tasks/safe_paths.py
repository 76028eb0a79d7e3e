"""Paths and archives from untrusted sources that must stay inside a folder.

Source metadata (a Slakh ``metadata.yaml``, a Looperman sidecar) names files relative to a
folder, and release tarballs name their members; either may be wrong or hostile. Everything
that turns such a name into a filesystem path goes through here:

* ``safe_join(root, rel)`` refuses absolute names, ``..`` escapes and names whose resolved
  path (after following symlinks) leaves ``root``;
* ``safe_extract_tar(tar_path, dest)`` checks every member of an archive before extracting
  any, and refuses absolute names, ``..`` components, links whose target leaves ``dest``,
  members written through a link, and devices or FIFOs. Python's ``data`` extraction filter
  is applied on top where this Python has it.
"""

from __future__ import annotations

import os
import posixpath
import tarfile


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


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


def check_tar_members(members: list[tarfile.TarInfo]) -> None:
    """Raise ValueError naming the first unsafe member; extract nothing."""
    links: set[str] = set()  # normalised names of symlink/hardlink members
    for m in members:
        name = m.name
        if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
            raise ValueError(f"unsafe archive member {name!r}: absolute path")
        parts = _member_parts(name)
        if ".." in parts:
            raise ValueError(f"unsafe archive member {name!r}: '..' in its path")
        if not parts:
            if m.isdir():
                continue  # "./" itself
            raise ValueError(f"unsafe archive member {name!r}: empty name")
        norm = "/".join(parts)
        for i in range(1, len(parts)):
            if "/".join(parts[:i]) in links:
                raise ValueError(f"unsafe archive member {name!r}: written through the link {'/'.join(parts[:i])!r}")
        if m.ischr() or m.isblk() or m.isfifo() or m.isdev():
            raise ValueError(f"unsafe archive member {name!r}: device or FIFO")
        if m.issym():
            target = m.linkname
            if target.startswith(("/", "\\")):
                raise ValueError(f"unsafe archive member {name!r}: symlink to absolute path {target!r}")
            joined = posixpath.normpath(posixpath.join(posixpath.dirname(norm), target.replace("\\", "/")))
            if joined == ".." or joined.startswith("../"):
                raise ValueError(f"unsafe archive member {name!r}: symlink target {target!r} leaves the destination")
            links.add(norm)
        elif m.islnk():
            target = m.linkname
            tparts = _member_parts(target)
            if target.startswith(("/", "\\")) or ".." in tparts or not tparts:
                raise ValueError(f"unsafe archive member {name!r}: hardlink target {target!r} leaves the destination")
            links.add(norm)
        elif not (m.isfile() or m.isdir()):
            raise ValueError(f"unsafe archive member {name!r}: unsupported member type {m.type!r}")


def safe_extract_tar(tar_path: str | os.PathLike, dest: str | os.PathLike) -> list[str]:
    """Extract a ``.tar`` / ``.tar.gz`` / ``.tar.bz2`` / ``.tar.xz`` into ``dest``.

    Every member is checked first; one unsafe member refuses the whole archive (ValueError
    naming it) and nothing is extracted. Returns the extracted member names, normalised and
    relative to ``dest``, in archive order.
    """
    dest_s = os.fspath(dest)
    os.makedirs(dest_s, exist_ok=True)
    try:
        tf = tarfile.open(os.fspath(tar_path), "r:*")
    except (tarfile.TarError, OSError) as e:
        raise ValueError(f"{os.fspath(tar_path)} is not a readable tar archive: {e}") from e
    with tf:
        members = tf.getmembers()
        check_tar_members(members)
        real_dest = os.path.realpath(dest_s)
        for m in members:  # the destination itself may hold links already: resolve against it
            parts = _member_parts(m.name)
            if parts and not _inside(os.path.realpath(os.path.join(real_dest, *parts[:-1])), real_dest):
                raise ValueError(f"unsafe archive member {m.name!r}: its folder resolves outside {real_dest!r}")
        if hasattr(tarfile, "data_filter"):
            try:
                tf.extractall(real_dest, members=members, filter="data")
            except tarfile.FilterError as e:
                raise ValueError(f"unsafe archive member refused by the data filter: {e}") from e
        else:  # Python without extraction filters: our checks above are the guard
            tf.extractall(real_dest, members=members)
    return ["/".join(_member_parts(m.name)) for m in members if _member_parts(m.name)]
