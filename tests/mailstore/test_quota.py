"""Maildir++ quota (``maildirsize``) on real files."""

from __future__ import annotations

import io
import os
import time
from pathlib import Path

import pytest

from mailhorn.mailstore import folders, quota
from mailhorn.mailstore.errors import QuotaExceeded
from mailhorn.mailstore.maildir import Mailbox
from mailhorn.mailstore.writer import deliver


def test_limits_parse_and_format() -> None:
    assert quota.QuotaLimits.parse("10000000S,1000C") == quota.QuotaLimits(10_000_000, 1000)
    assert quota.QuotaLimits.parse("1000C") == quota.QuotaLimits(None, 1000)
    assert quota.QuotaLimits.parse("0S,5C") == quota.QuotaLimits(None, 5)
    assert quota.QuotaLimits(10_000_000, 1000).format() == "10000000S,1000C"
    for bad in ("10M", "S", "12X", "1S,two"):
        with pytest.raises(ValueError):
            quota.QuotaLimits.parse(bad)


def test_delivery_appends_lines_and_refuses_over_quota(tmp_path: Path) -> None:
    folders.make_maildir(tmp_path)
    folders.create_folder(tmp_path, "Sent")
    quota.set_limits(tmp_path, quota.QuotaLimits(100, 3))
    d1 = deliver(tmp_path, io.BytesIO(b"x" * 40))
    d2 = deliver(folders.folder_path(tmp_path, "Sent"), io.BytesIO(b"y" * 40))
    assert (tmp_path / "maildirsize").read_text() == f"100S,3C\n0 0\n{d1.size} 1\n{d2.size} 1\n"
    with pytest.raises(QuotaExceeded) as exc:
        deliver(tmp_path, io.BytesIO(b"z" * 40))
    assert exc.value.used_bytes == 80 and exc.value.limit_bytes == 100
    assert len(list((tmp_path / "new").iterdir())) == 1
    assert list((tmp_path / "tmp").iterdir()) == []
    # The size hint refuses before anything is written.
    with pytest.raises(QuotaExceeded):
        deliver(tmp_path, io.BytesIO(b""), size_hint=1000)
    # Expunging frees room: a negative line is appended.
    box = Mailbox(tmp_path)
    box.expunge(box.sync())
    assert (tmp_path / "maildirsize").read_text().endswith(f"-{d1.size} -1\n")
    deliver(tmp_path, io.BytesIO(b"z" * 40))
    deliver(tmp_path, io.BytesIO(b"w"))
    with pytest.raises(QuotaExceeded) as exc2:
        deliver(tmp_path, io.BytesIO(b"v"))  # the fourth message passes 3C
    assert exc2.value.used_count == 3


def test_no_file_no_quota_unless_configured(tmp_path: Path) -> None:
    deliver(tmp_path, io.BytesIO(b"x" * 500))
    assert not (tmp_path / "maildirsize").exists()
    assert quota.get_usage(tmp_path) is None
    with pytest.raises(QuotaExceeded):
        deliver(tmp_path, io.BytesIO(b"y" * 10), quota_limits=quota.QuotaLimits(400, None))
    # The configured limits rebuilt the file from the messages.
    assert (tmp_path / "maildirsize").read_text() == "400S\n500 1\n"


def test_recalculated_when_file_reaches_5120_bytes(tmp_path: Path) -> None:
    deliver(tmp_path, io.BytesIO(b"m" * 10))
    lines = "1 1\n" * 1300  # wrong totals, 5200 bytes
    (tmp_path / "maildirsize").write_text("0S,100000C\n" + lines)
    usage = quota.get_usage(tmp_path)
    assert usage is not None and usage.recalculated
    assert (usage.used_bytes, usage.used_count) == (10, 1)
    assert (tmp_path / "maildirsize").read_text() == "100000C\n10 1\n"


def test_over_quota_is_rechecked_when_several_lines_or_old(tmp_path: Path) -> None:
    deliver(tmp_path, io.BytesIO(b"m" * 10))
    # Says full, but in several lines: recount before refusing (messages were removed
    # by a client that does not know Maildir++).
    (tmp_path / "maildirsize").write_text("100S\n60 1\n40 1\n")
    assert quota.check(tmp_path, 20) is not None
    assert (tmp_path / "maildirsize").read_text() == "100S\n10 1\n"
    # One line, fresh: trusted, refused without recounting.
    (tmp_path / "maildirsize").write_text("100S\n95 1\n")
    with pytest.raises(QuotaExceeded):
        quota.check(tmp_path, 20)
    # The same file 15 minutes old is recounted.
    old = time.time() - quota.RECALC_AGE - 5
    os.utime(tmp_path / "maildirsize", (old, old))
    assert quota.check(tmp_path, 20) is not None


def test_recalculation_counts_folders_and_stat_sizes(tmp_path: Path) -> None:
    folders.make_maildir(tmp_path)
    folders.create_folder(tmp_path, "Trash")
    deliver(folders.folder_path(tmp_path, "Trash"), io.BytesIO(b"t" * 7))
    (tmp_path / "cur" / "123.foreign:2,S").write_bytes(b"abcde")  # no S= in the name: stat()
    (tmp_path / "tmp" / "999.partial").write_bytes(b"not counted")
    assert quota.count_usage(tmp_path) == (12, 2)
    assert quota.quota_root(folders.folder_path(tmp_path, "Trash")) == tmp_path
