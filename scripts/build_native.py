"""Compile mailhorn's per-message modules to C extensions with mypyc.

mailhorn is Python source and runs as such anywhere. The modules in
:data:`NATIVE_MODULES` carry the work every message costs (the SMTP engine,
smtpd and its restrictions, cleanup, the queue files, the queue manager,
delivery into a Maildir, logging); this script compiles them, from the same
source and unchanged, with mypyc, which the package's strict typing makes
possible. Each compiled module is an extension module beside its ``.py``;
the import system prefers the extension, so nothing else changes. Measured
with ``bench/instructions.py`` (one worker, 4 KiB messages): the accepting
worker runs 43 % fewer instructions per message (2.39 M -> 1.36 M), the
delivering one 37 % fewer (3.76 M -> 2.35 M).

Usage (from the repository, with the virtual environment's Python)::

    python scripts/build_native.py            # build, unless up to date
    python scripts/build_native.py --check    # exit 1 when out of date
    python scripts/build_native.py --clean    # remove the compiled modules

Up to date means: ``mailhorn/native.manifest`` lists, for this Python's
extension suffix, exactly the modules of :data:`NATIVE_MODULES` with the
SHA-256 of the source each was compiled from, and every one of those
extension files exists. An edited source makes the build out of date:
``make venv`` (and so ``make run`` and ``make test``) rebuilds, and
``tests/test_native.py`` fails on a stale build rather than testing code
that is not the source.

The C files and objects go to ``build/native/``; the compiler runs on every
core (mypyc writes one C file per module, and distutils would compile them
one after the other).

What compiled code does differently, and the listed modules therefore avoid
(each was met here): ``functools.cached_property`` recomputes every time (a
compiled class has no instance ``__dict__``); a compiled class cannot be
weakly referenced (mark it ``@mypyc_attr(native_class=False)``); a dropped
generator never runs its ``finally`` (see :mod:`mailhorn.filechunks`); the
bounds of a slice of a memoryview or bytearray are evaluated twice (no side
effects there: :func:`mailhorn.durable.write_all`); module functions are
bound at compile time, so replacing one from outside (a test's monkeypatch)
does not reach the compiled callers; a compiled module cannot be run with
``python -m`` (runpy wants its code object; the delivery helper starts with
``-c``); async generators, ``continue`` inside ``with``, and attribute names
that become C keywords (``_thread``) do not compile.

A dataclass keeps the ``__init__`` the ``dataclasses`` module writes, which
runs as Python even in a compiled class: with ``frozen=True`` about ten
times the cost of a compiled one (350 ns against 32). The classes made for
every message therefore write their ``__init__`` out, assigning each field
with ``object.__setattr__(self, name, value)`` when frozen (mypyc turns that
into a plain store; interpreted it passes the frozen check) or plainly
otherwise; the decorator still adds ``__eq__``, ``__hash__`` and
``__repr__``. In the accepting worker this took the instructions per
message from 1.36 M to 1.11 M.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.machinery
import os
import shutil
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "mailhorn"
MANIFEST = PACKAGE / "native.manifest"
BUILD = ROOT / "build" / "native"
#: mypyc's shared runtime for the group: ``mailhorn/native__mypyc.*.so``.
GROUP = "mailhorn.native"

#: The compiled modules, relative to the repository. Left out on purpose:
#: package ``__init__`` files (an extension module cannot be a package),
#: ``tables/base.py`` and ``runtime.py`` (their ``runtime_checkable``
#: protocols must stay Python classes), ``tables/matchlist.py`` (its
#: subclasses narrow an attribute's type, which compiled classes cannot),
#: start-up and command-line code (run once; compiling it would only
#: lengthen the build).
NATIVE_MODULES: tuple[str, ...] = (
    "mailhorn/address/errors.py",
    "mailhorn/address/header.py",
    "mailhorn/address/idna.py",
    "mailhorn/address/parse.py",
    "mailhorn/address/quote.py",
    "mailhorn/address/resolve.py",
    "mailhorn/address/rewrite.py",
    "mailhorn/address/virtual.py",
    "mailhorn/anvil.py",
    "mailhorn/cleanup/body.py",
    "mailhorn/cleanup/cleanup.py",
    "mailhorn/cleanup/headers.py",
    "mailhorn/cleanup/local_clients.py",
    "mailhorn/cleanup/mapping.py",
    "mailhorn/cleanup/mime.py",
    "mailhorn/cleanup/received.py",
    "mailhorn/cleanup/request.py",
    "mailhorn/cleanup/settings.py",
    "mailhorn/config/load.py",
    "mailhorn/config/maincf.py",
    "mailhorn/delivery/headers.py",
    "mailhorn/delivery/privs.py",
    "mailhorn/delivery/request.py",
    "mailhorn/delivery/virtual.py",
    "mailhorn/durable.py",
    "mailhorn/fdwait.py",
    "mailhorn/filechunks.py",
    "mailhorn/iopool.py",
    "mailhorn/log.py",
    "mailhorn/mailstore/errors.py",
    "mailhorn/mailstore/folders.py",
    "mailhorn/mailstore/keywords.py",
    "mailhorn/mailstore/lock.py",
    "mailhorn/mailstore/maildir.py",
    "mailhorn/mailstore/quota.py",
    "mailhorn/mailstore/uidlist.py",
    "mailhorn/mailstore/writer.py",
    "mailhorn/netserve.py",
    "mailhorn/privsep.py",
    "mailhorn/queue/agents.py",
    "mailhorn/queue/attempt.py",
    "mailhorn/queue/defer_log.py",
    "mailhorn/queue/fsync.py",
    "mailhorn/queue/listing.py",
    "mailhorn/queue/maildrop.py",
    "mailhorn/queue/manager.py",
    "mailhorn/queue/pickup.py",
    "mailhorn/queue/qmgr_log.py",
    "mailhorn/queue/queuefile.py",
    "mailhorn/queue/queuefile_writer.py",
    "mailhorn/queue/scheduler.py",
    "mailhorn/queue/spares.py",
    "mailhorn/queue/store.py",
    "mailhorn/queue/tempfiles.py",
    "mailhorn/runtime_build.py",
    "mailhorn/smtp/codec.py",
    "mailhorn/smtp/commands.py",
    "mailhorn/smtp/data.py",
    "mailhorn/smtp/lines.py",
    "mailhorn/smtp/reply.py",
    "mailhorn/smtpd/access.py",
    "mailhorn/smtpd/auth.py",
    "mailhorn/smtpd/checks.py",
    "mailhorn/smtpd/checks_access.py",
    "mailhorn/smtpd/checks_addr.py",
    "mailhorn/smtpd/checks_core.py",
    "mailhorn/smtpd/checks_dns.py",
    "mailhorn/smtpd/checks_misc.py",
    "mailhorn/smtpd/checks_resolve.py",
    "mailhorn/smtpd/context.py",
    "mailhorn/smtpd/handlers.py",
    "mailhorn/smtpd/peer.py",
    "mailhorn/smtpd/policy.py",
    "mailhorn/smtpd/server.py",
    "mailhorn/smtpd/session.py",
    "mailhorn/smtpd/settings.py",
    "mailhorn/smtpd/smtpd_log.py",
    "mailhorn/smtpd/state.py",
    "mailhorn/smtpd/stream.py",
    "mailhorn/smtpd/tls.py",
    "mailhorn/smtpd/transaction.py",
    "mailhorn/smtpd/xforward.py",
    "mailhorn/tables/registry.py",
    "mailhorn/tables/static.py",
)


def _suffix() -> str:
    return importlib.machinery.EXTENSION_SUFFIXES[0]


def _extension(source: str) -> Path:
    return ROOT / (source.removesuffix(".py") + _suffix())


def _wanted() -> list[str]:
    """The manifest lines the current sources call for."""
    lines = [f"suffix {_suffix()}"]
    for source in NATIVE_MODULES:
        digest = hashlib.sha256((ROOT / source).read_bytes()).hexdigest()
        lines.append(f"{digest}  {source}")
    return lines


def up_to_date() -> bool:
    """Whether every listed module is compiled from its current source."""
    try:
        built = MANIFEST.read_text().splitlines()
    except FileNotFoundError:
        return False
    return built == _wanted() and all(_extension(source).exists() for source in NATIVE_MODULES)


def clean() -> None:
    """Remove every compiled module of the package (it then runs interpreted)."""
    MANIFEST.unlink(missing_ok=True)
    for path in PACKAGE.rglob("*.so"):
        path.unlink()
    shutil.rmtree(BUILD, ignore_errors=True)


def _parallel_build_ext() -> type:
    """setuptools' build_ext, compiling the C files of one extension concurrently."""
    from setuptools.command.build_ext import build_ext

    class ParallelBuildExt(build_ext):  # type: ignore[misc]
        def build_extension(self, ext: Any) -> None:
            compile_one = self.compiler.compile

            def compile_all(sources: list[str], *args: Any, **kwargs: Any) -> list[str]:
                with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
                    parts = pool.map(lambda src: compile_one([src], *args, **kwargs), sources)
                    return [obj for objs in parts for obj in objs]

            self.compiler.compile = compile_all
            try:
                super().build_extension(ext)
            finally:
                self.compiler.compile = compile_one

    return ParallelBuildExt


def build() -> None:
    """Compile :data:`NATIVE_MODULES` in place and write the manifest."""
    from mypyc.build import mypycify
    from setuptools import setup

    clean()
    BUILD.mkdir(parents=True)
    os.chdir(ROOT)
    extensions = mypycify(list(NATIVE_MODULES), opt_level="3", multi_file=True, group_name=GROUP,
                          target_dir=str(BUILD))
    for ext in extensions:
        # mypyc writes the group's headers under the group's package directory
        # but includes them by bare name.
        ext.include_dirs.append(str(BUILD / GROUP.rpartition(".")[0]))
    setup(name="mailhorn-native", ext_modules=extensions, packages=[], script_args=[
        "-q", "build_ext", "--inplace", "--build-temp", str(BUILD / "temp"),
    ], cmdclass={"build_ext": _parallel_build_ext()})
    MANIFEST.write_text("\n".join(_wanted()) + "\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.partition("\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 when the build is out of date")
    parser.add_argument("--clean", action="store_true", help="remove the compiled modules")
    args = parser.parse_args()
    if args.clean:
        clean()
        return 0
    if args.check:
        return 0 if up_to_date() else 1
    if not up_to_date():
        build()
    return 0


if __name__ == "__main__":
    sys.exit(main())
