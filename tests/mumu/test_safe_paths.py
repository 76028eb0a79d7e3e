import io
import os
import tarfile

import pytest

from mumu.safe_paths import safe_extract_tar, safe_join


def make_tar(path, members, mode="w:gz"):
    """members: (name, kind, payload) with kind file|dir|symlink|hardlink|fifo|chr."""
    with tarfile.open(path, mode) as tf:
        for name, kind, payload in members:
            info = tarfile.TarInfo(name)
            if kind == "file":
                data = payload.encode() if isinstance(payload, str) else payload
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
                continue
            info.type = {"dir": tarfile.DIRTYPE, "symlink": tarfile.SYMTYPE, "hardlink": tarfile.LNKTYPE,
                         "fifo": tarfile.FIFOTYPE, "chr": tarfile.CHRTYPE}[kind]
            if kind in ("symlink", "hardlink"):
                info.linkname = payload
            tf.addfile(info)
    return path


# safe_join -------------------------------------------------------------------------------------
def test_safe_join_inside(tmp_path):
    (tmp_path / "a").mkdir()
    assert safe_join(tmp_path, "a/b.txt") == os.path.join(os.path.realpath(tmp_path), "a", "b.txt")
    assert safe_join(tmp_path, "a/../c") == os.path.join(os.path.realpath(tmp_path), "c")  # stays inside
    assert safe_join(tmp_path, "") == os.path.realpath(tmp_path)


@pytest.mark.parametrize("rel", ["/etc/passwd", "..", "../x", "a/../../x", "a/b/../../../x", "x\x00y"])
def test_safe_join_refuses_escapes(tmp_path, rel):
    with pytest.raises(ValueError):
        safe_join(tmp_path, rel)


def test_safe_join_refuses_symlink_out(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    (root / "link").symlink_to(outside)
    (root / "inner").symlink_to(root / ".")
    with pytest.raises(ValueError, match="symlink"):
        safe_join(root, "link/secret")
    assert safe_join(root, "inner/ok") == os.path.join(os.path.realpath(root), "ok")


# safe_extract_tar --------------------------------------------------------------------------------
def test_extracts_a_good_archive(tmp_path):
    tar = make_tar(tmp_path / "good.tar.gz", [
        ("slakh", "dir", None), ("slakh/Track00001/metadata.yaml", "file", "stems: {}\n"),
        ("slakh/Track00001/alias.yaml", "symlink", "metadata.yaml"),
        ("./slakh/readme.txt", "file", "hello"),
    ])
    dest = tmp_path / "out"
    names = safe_extract_tar(tar, dest)
    assert names == ["slakh", "slakh/Track00001/metadata.yaml", "slakh/Track00001/alias.yaml", "slakh/readme.txt"]
    assert (dest / "slakh/Track00001/alias.yaml").read_text() == "stems: {}\n"
    assert (dest / "slakh/readme.txt").read_text() == "hello"


def test_plain_tar_works_too(tmp_path):
    tar = make_tar(tmp_path / "a.tar", [("x.txt", "file", "1")], mode="w")
    assert safe_extract_tar(tar, tmp_path / "o") == ["x.txt"]


@pytest.mark.parametrize("bad, why", [
    (("../evil.txt", "file", "x"), "'..'"),
    (("a/../../evil.txt", "file", "x"), "'..'"),
    (("/tmp/evil.txt", "file", "x"), "absolute"),
    (("link", "symlink", "/etc/passwd"), "absolute"),
    (("link", "symlink", "../../outside"), "leaves"),
    (("sub/link", "symlink", "../.."), "leaves"),
    (("hard", "hardlink", "../outside"), "leaves"),
    (("hard", "hardlink", "/etc/passwd"), "leaves"),
    (("pipe", "fifo", None), "FIFO"),
    (("dev", "chr", None), "FIFO"),
])
def test_refuses_unsafe_members_and_extracts_nothing(tmp_path, bad, why):
    # a harmless member comes first: it must not be extracted either
    tar = make_tar(tmp_path / "bad.tar.gz", [("ok.txt", "file", "fine"), bad])
    dest = tmp_path / "out"
    with pytest.raises(ValueError, match=why) as err:
        safe_extract_tar(tar, dest)
    assert repr(bad[0]) in str(err.value)  # names the offending member
    assert not (dest / "ok.txt").exists()
    assert not (tmp_path / "evil.txt").exists()


def test_refuses_writing_through_a_symlink_member(tmp_path):
    # "up" points at the archive root (allowed on its own) but then "up/x/../.." style tricks and
    # plain writes through the link are refused: nothing may be written through a link
    tar = make_tar(tmp_path / "t.tar", [("d", "dir", None), ("d/up", "symlink", ".."), ("d/up/f.txt", "file", "x")],
                   mode="w")
    with pytest.raises(ValueError, match="through the link"):
        safe_extract_tar(tar, tmp_path / "out")


def test_refuses_when_dest_holds_a_link_out(tmp_path):
    dest = tmp_path / "out"
    dest.mkdir()
    (tmp_path / "elsewhere").mkdir()
    (dest / "sub").symlink_to(tmp_path / "elsewhere")
    tar = make_tar(tmp_path / "t.tar", [("sub/f.txt", "file", "x")], mode="w")
    with pytest.raises(ValueError, match="outside"):
        safe_extract_tar(tar, dest)
    assert not (tmp_path / "elsewhere" / "f.txt").exists()


def test_not_a_tar(tmp_path):
    p = tmp_path / "x.tar.gz"
    p.write_bytes(b"not a tarball at all")
    with pytest.raises(ValueError, match="not a readable tar"):
        safe_extract_tar(p, tmp_path / "o")
