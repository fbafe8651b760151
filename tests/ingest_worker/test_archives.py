"""Hostile and ordinary archives: what is taken, skipped and rejected, and why."""

from __future__ import annotations

import pytest
from archive_builders import device, gzip_bomb, hardlink, symlink, tar_bytes, zip_bomb, zip_bytes
from ingest_worker.archives import ArchiveRejected, unpack
from sparkstack_common.ingestion.contract import IngestLimits as Limits

SOURCE = {
    "proj/app/main.py": b"def main():\n    return 1\n",
    "proj/app/util.py": b"X = 1\n",
    "proj/README.md": b"# Project\n",
}


@pytest.mark.parametrize("mode", ["w", "w:gz", "w:bz2", "w:xz"])
def test_tar_formats(mode: str) -> None:
    out = unpack(tar_bytes(SOURCE, mode))
    assert {e.path for e in out.files} == set(SOURCE)
    assert all(len(e.sha256) == 64 for e in out.files)


def test_zip() -> None:
    out = unpack(zip_bytes(SOURCE))
    assert {e.path: e.data for e in out.files} == SOURCE


def test_unsafe_entries_are_rejected_with_reasons() -> None:
    data = tar_bytes(
        {
            "ok.py": b"x = 1\n",
            "/etc/passwd": b"root\n",
            "a/../../escape.py": b"x\n",
            "bin.dat": b"\x00\x01\x02",
            "big.py": b"#" * 2048,
        },
        extra=[symlink("link.py", "/etc/passwd"), hardlink("hard.py", "ok.py"), device("dev0")],
    )
    out = unpack(data, Limits(max_file_bytes=1024))
    assert [e.path for e in out.files] == ["ok.py"]
    reasons = dict(out.rejected)
    assert reasons["/etc/passwd"] == "rejected: absolute path"
    assert reasons["a/../../escape.py"] == "rejected: path traversal"
    assert reasons["link.py"] == "rejected: symlink"
    assert reasons["hard.py"] == "rejected: hard link"
    assert reasons["dev0"] == "rejected: device or special file"
    assert reasons["bin.dat"] == "rejected: binary"
    assert reasons["big.py"] == "rejected: larger than 1024 bytes"


def test_zip_symlink_escape_is_rejected() -> None:
    out = unpack(zip_bytes({"a.py": b"x\n"}, symlinks={"evil.py": "../../../etc/shadow"}))
    assert [e.path for e in out.files] == ["a.py"]
    assert dict(out.rejected) == {"evil.py": "rejected: symlink"}


def test_skips_vcs_build_dot_lock_minified_vendored_and_gitignored() -> None:
    files = {
        "p/.git/config": b"[core]\n",
        "p/node_modules/x/index.js": b"x\n",
        "p/.cache/a.py": b"x\n",
        "p/build/out.py": b"x\n",
        "p/vendor/lib.go": b"x\n",
        "p/uv.lock": b"x\n",
        "p/static/app.min.js": b"x\n",
        "p/.gitignore": b"secrets/\n*.log\n",
        "p/secrets/key.py": b"x\n",
        "p/debug.log": b"x\n",
        "p/src/keep.py": b"x = 1\n",
        "p/src/.gitignore": b"generated_*.py\n",
        "p/src/generated_a.py": b"x\n",
    }
    out = unpack(tar_bytes(files))
    assert {e.path for e in out.files} == {"p/src/keep.py", "p/.gitignore", "p/src/.gitignore"}
    skipped = dict(out.skipped)
    assert skipped["p/.git/config"] == "skipped: .git/ directory"
    assert skipped["p/node_modules/x/index.js"] == "skipped: node_modules/ directory"
    assert skipped["p/.cache/a.py"] == "skipped: dot-directory"
    assert skipped["p/uv.lock"] == "skipped: lock file"
    assert skipped["p/static/app.min.js"] == "skipped: minified or generated"
    assert skipped["p/vendor/lib.go"] == "skipped: vendor/ directory"
    for ignored in ("p/secrets/key.py", "p/debug.log", "p/src/generated_a.py"):
        assert skipped[ignored] == "skipped: .gitignore"


def test_zip_bomb_is_refused() -> None:
    with pytest.raises(ArchiveRejected, match="bomb"):
        unpack(zip_bomb())


def test_gzip_bomb_is_refused_by_counting_bytes() -> None:
    with pytest.raises(ArchiveRejected, match="bomb"):
        unpack(gzip_bomb(), Limits(max_file_bytes=2 << 20))


def test_more_files_than_the_limit_are_refused_naming_the_setting() -> None:
    data = tar_bytes({f"f/{i}.py": b"x=1\n" for i in range(10_000)})
    with pytest.raises(
        ArchiveRejected, match=r"more than 2000 files \(SPARKSTACK_INGEST_MAX_FILES\)"
    ):
        unpack(data, Limits(max_files=2000))
    assert len(unpack(data).files) == 10_000  # the default fits real repositories


def test_real_codebase_sizes_fit_the_defaults() -> None:
    limits = Limits()
    assert limits.max_files >= 100_000 and limits.max_total_bytes >= 2 << 30


def test_a_zip_with_too_many_entries_is_refused_before_its_directory_is_read(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import zipfile

    data = zip_bytes({f"e/{i}": b"" for i in range(3000)})

    def no_directory_parsing(*args: object, **kwargs: object) -> None:
        raise AssertionError("the central directory was parsed")

    monkeypatch.setattr(zipfile, "ZipFile", no_directory_parsing)
    with pytest.raises(ArchiveRejected, match=r"3000 entries, more than 1000"):
        unpack(data, Limits(max_entries=1000))


def test_zip64_end_record_is_read() -> None:
    import io
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", allowZip64=True) as archive:
        for i in range(70_000):  # more than 65,535 entries: zip64 end records
            archive.writestr(f"d{i // 1000}/f{i}.txt", b"")
    with pytest.raises(ArchiveRejected, match=r"70000 entries"):
        unpack(buf.getvalue(), Limits(max_entries=60_000))


@pytest.mark.parametrize(
    "data",
    [
        tar_bytes(SOURCE)[:-30],  # truncated gzip
        b"\x1f\x8b\x08\x00garbage" * 10,
        zip_bytes(SOURCE)[:60],
        b"just some text, not an archive",
    ],
)
def test_corrupt_or_foreign_data_is_refused(data: bytes) -> None:
    with pytest.raises(ArchiveRejected) as err:
        unpack(data)
    assert "corrupt" in str(err.value) or "not a tar" in str(err.value)
