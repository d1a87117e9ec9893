"""The compiled modules (scripts/build_native.py) are fresh, and in use.

An extension module wins over the ``.py`` beside it at import, so a build
older than its source would run, and be tested as, code that is no longer
the source. These tests fail on such a build. Under ``CI=true`` (where
``make test`` has just built) the build must also be there and be what the
package imports; elsewhere a checkout without a build is fine.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "build_native.py"
sys.path.insert(0, str(SCRIPT.parent))
import build_native  # noqa: E402  (a script, not a package)

sys.path.remove(str(SCRIPT.parent))

BUILT = build_native.MANIFEST.exists()
CI = os.environ.get("CI") == "true"


def _module_name(source: str) -> str:
    return source.removesuffix(".py").replace("/", ".")


@pytest.mark.skipif(not BUILT and not CI, reason="no compiled modules in this checkout (make venv builds them)")
def test_build_matches_sources() -> None:
    assert BUILT, "make test builds the compiled modules; mailhorn/native.manifest is missing"
    done = subprocess.run([sys.executable, str(SCRIPT), "--check"], cwd=ROOT)
    assert done.returncode == 0, "compiled modules are older than their sources: run `make venv`"


@pytest.mark.skipif(not BUILT and not CI, reason="no compiled modules in this checkout (make venv builds them)")
def test_compiled_modules_are_imported() -> None:
    for source in build_native.NATIVE_MODULES:
        module = importlib.import_module(_module_name(source))
        assert module.__file__ is not None and module.__file__.endswith(build_native._suffix()), module.__file__


def test_every_listed_module_exists_and_no_package_init() -> None:
    for source in build_native.NATIVE_MODULES:
        assert (ROOT / source).is_file(), source
        assert not source.endswith("__init__.py"), "an extension module cannot be a package"
        assert importlib.util.find_spec(_module_name(source)) is not None


def test_check_reports_a_changed_source(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--check compares each source's digest with the manifest's line."""
    if not BUILT:
        pytest.skip("no compiled modules in this checkout")
    lines = build_native.MANIFEST.read_text().splitlines()
    assert lines == build_native._wanted()
    manifest = tmp_path / "native.manifest"
    digest, _, source = lines[1].partition("  ")
    manifest.write_text("\n".join([lines[0], "0" * len(digest) + "  " + source, *lines[2:]]) + "\n")
    monkeypatch.setattr(build_native, "MANIFEST", manifest)
    assert not build_native.up_to_date()
    manifest.write_text("\n".join(lines) + "\n")
    assert build_native.up_to_date()


#: The dataclasses made for every message (SMTP engine, smtpd, cleanup, queue
#: manager, delivery), which write their ``__init__`` out (see build_native).
PER_MESSAGE_DATACLASSES = (
    "mailhorn.smtp.lines:Line", "mailhorn.smtp.codec:CommandEvent", "mailhorn.smtp.codec:BodyChunk",
    "mailhorn.smtp.codec:BodyEnd", "mailhorn.smtp.commands:Path", "mailhorn.smtp.commands:MailParams",
    "mailhorn.smtp.commands:RcptParams", "mailhorn.smtp.commands:Hello", "mailhorn.smtp.commands:Mail",
    "mailhorn.smtp.commands:Rcpt", "mailhorn.smtp.commands:Data", "mailhorn.smtp.reply:Reply",
    "mailhorn.cleanup.request:RecipientRequest", "mailhorn.cleanup.request:ClientInfo",
    "mailhorn.cleanup.request:SmtpdActions", "mailhorn.cleanup.request:CleanupRequest",
    "mailhorn.cleanup.request:CleanupResult", "mailhorn.cleanup.headers:LogContext",
    "mailhorn.cleanup.mapping:Span", "mailhorn.smtpd.checks_core:Run", "mailhorn.smtpd.state:Action",
    "mailhorn.smtpd.state:CheckResult", "mailhorn.smtpd.access:AccessResult", "mailhorn.smtpd.peer:PeerName",
    "mailhorn.smtpd.checks_resolve:Resolution", "mailhorn.smtpd.transaction:Transaction",
    "mailhorn.queue.queuefile:Recipient", "mailhorn.queue.queuefile:QueueFile",
    "mailhorn.queue.qmgr_log:Delays", "mailhorn.queue.attempt:Job", "mailhorn.queue.attempt:ActiveMessage",
    "mailhorn.queue.attempt:RecordedStatus", "mailhorn.address.resolve:Resolution",
    "mailhorn.address.resolve:Route", "mailhorn.delivery.request:DeliveryRecipient",
    "mailhorn.delivery.request:DeliveryRequest", "mailhorn.delivery.request:RecipientStatus",
    "mailhorn.delivery.privs:Identity",
)


@pytest.mark.parametrize("name", PER_MESSAGE_DATACLASSES)
def test_per_message_dataclasses_write_their_init(name: str) -> None:
    # The dataclasses module's __init__ is compiled from a string ("<string>")
    # and runs as Python even in a compiled class; a written-out one is the
    # class's own (a C method when compiled) and is kept by the decorator.
    module, _, cls_name = name.partition(":")
    cls = getattr(importlib.import_module(module), cls_name)
    init = cls.__dict__["__init__"]
    code = getattr(init, "__code__", None)
    assert code is None or code.co_filename != "<string>", f"{name} uses the generated __init__"
