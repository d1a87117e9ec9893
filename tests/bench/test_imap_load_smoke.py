"""The IMAP load generator runs against mailhorn and every operation of its cycle succeeds.

A smoke test of ``bench/imap_load.py`` (no timing is asserted: timings live in
the benchmark's own output): a small corpus, two users, two clients for two
seconds against ``mailhorn start-fg``, results read from ``--json``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT

OPERATIONS = ("CONNECT", "LOGIN", "SELECT", "FETCH FLAGS", "FETCH BODY", "STORE SEEN", "STORE DELETED",
              "APPEND", "EXPUNGE", "LOGOUT")


def test_load_generator_against_mailhorn(tmp_path: Path) -> None:
    out = tmp_path / "result.json"
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "imap_load.py"), "--only", "mailhorn", "--clients", "2",
         "--duration", "2", "--messages", "40", "--users", "2", "--scheme", "PLAIN", "--json", str(out)],
        capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(out.read_text())["results"]["mailhorn"]["2"]
    assert result["cycles"] >= 1, result["failure_samples"]
    for op in OPERATIONS:
        assert result["operations"][op]["count"] >= result["cycles"], (op, result)
    assert result["operations"]["FETCH BODY"]["count"] >= 3 * result["cycles"]
    assert result["commands"] == sum(v["count"] for k, v in result["operations"].items() if k != "CONNECT")
    assert result["mb_received"] > 0
    assert result["peak_pss_mb"] > 0
    assert result["failures"] == {} or sum(result["failures"].values()) < result["cycles"], result
