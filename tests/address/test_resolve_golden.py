"""Resolve and rewrite compared with the real trivial-rewrite(8).

Each directory under ``tests/golden/resolve/`` is one configuration:
``main.cf`` (added to :data:`BASE`; ``$config_directory`` names the case's
own directory, where its table files are), ``queries`` (one address per
line, ``ADDRESS FROM SENDER`` for a sender, ``<>`` for the empty address;
in ``rewrite/`` the lines are ``CONTEXT ADDRESS``) and ``queries.ref``, the
answers of the real Postfix 3.7 trivial-rewrite for the same configuration.

``test_golden`` checks mailhorn against ``queries.ref`` (fast, no Postfix
needed). ``test_oracle`` asks the real trivial-rewrite again and checks that
``queries.ref`` is still its answer; with ``MAILHORN_REGOLD=1`` it rewrites
``queries.ref`` from the oracle's answers (never from mailhorn's).

For malformed addresses (RESOLVE_FLAG_ERROR) and failures (RESOLVE_FLAG_FAIL)
Postfix leaves transport and next hop unset; they are written as ``-``.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from mailhorn.address.resolve import RESOLVE_FLAG_ERROR, RESOLVE_FLAG_FAIL, Resolver
from mailhorn.address.rewrite import Rewriter
from mailhorn.config.load import load
from tests.address.trivial_rewrite_oracle import TrivialRewriteOracle, available
from tests.conftest import require

GOLDEN = Path(__file__).resolve().parent.parent / "golden" / "resolve"
CASES = sorted(p.name for p in GOLDEN.iterdir() if p.is_dir())

BASE = """compatibility_level = 3.6
inet_interfaces = loopback-only
inet_protocols = ipv4
myhostname = host.example.org
mydomain = example.org
"""


def queries(case: str) -> list[str]:
    return [line for line in (GOLDEN / case / "queries").read_text().split("\n") if line]


def install(case: str, root: Path) -> Path:
    """Copy the case's tables to ``root/etc`` and write its main.cf there."""
    etc = root / "etc"
    etc.mkdir(parents=True, exist_ok=True)
    for item in (GOLDEN / case).iterdir():
        if item.name not in ("main.cf", "queries", "queries.ref"):
            shutil.copy(item, etc / item.name)
    return etc


def main_cf(case: str) -> str:
    return BASE + (GOLDEN / case / "main.cf").read_text()


def parse_query(line: str) -> tuple[str, str]:
    address, _, sender = line.partition(" FROM ")
    return ("" if address == "<>" else address), ("" if sender == "<>" else sender)


def render(flags: int, transport: str, nexthop: str, recipient: str) -> str:
    if flags & (RESOLVE_FLAG_ERROR | RESOLVE_FLAG_FAIL):
        transport = nexthop = "-"
    return f"flags={flags:#06x} transport={transport} nexthop={nexthop} recipient={recipient}"


def mailhorn_answers(case: str, root: Path) -> list[str]:
    etc = install(case, root)
    (etc / "main.cf").write_text(main_cf(case))
    config = load(str(etc))
    if case == "rewrite":
        rewriter = Rewriter(config)
        out = []
        for line in queries(case):
            context, _, address = line.partition(" ")
            out.append(rewriter.rewrite(context, "" if address == "<>" else address))
        return out
    resolver = Resolver(config)
    answers = []
    for line in queries(case):
        r = resolver.resolve(*parse_query(line))
        answers.append(render(r.flags, r.transport, r.nexthop, r.recipient))
    return answers


def oracle_answers(case: str, root: Path) -> list[str]:
    etc = install(case, root)
    oracle = TrivialRewriteOracle(root, main_cf(case).replace("$config_directory", str(etc)))
    if case == "rewrite":
        pairs = []
        for line in queries(case):
            context, _, address = line.partition(" ")
            pairs.append((context, "" if address == "<>" else address))
        return oracle.rewrite_many(pairs)
    return [
        render(r.flags, r.transport, r.nexthop, r.recipient)
        for r in oracle.resolve_many([parse_query(line) for line in queries(case)])
    ]


def ref_lines(case: str) -> list[str]:
    text = (GOLDEN / case / "queries.ref").read_text()
    return [line.split("\t", 1)[1] for line in text.split("\n") if line]


def write_ref(case: str, answers: list[str]) -> None:
    lines = [f"{q}\t{a}\n" for q, a in zip(queries(case), answers)]
    (GOLDEN / case / "queries.ref").write_text("".join(lines))


@pytest.mark.parametrize("case", CASES)
def test_golden(case: str, tmp_path: Path) -> None:
    got = mailhorn_answers(case, tmp_path)
    want = ref_lines(case)
    diffs = [f"{q}\n  postfix: {w}\n  mailhorn: {g}" for q, w, g in zip(queries(case), want, got) if w != g]
    assert not diffs, "\n".join(diffs)
    assert len(got) == len(want)


@pytest.mark.parametrize("case", CASES)
def test_oracle(case: str, tmp_path: Path) -> None:
    require(available(), "the real trivial-rewrite needs root and Postfix 3.7 installed")
    answers = oracle_answers(case, tmp_path)
    if os.environ.get("MAILHORN_REGOLD") == "1":
        write_ref(case, answers)
    assert answers == ref_lines(case)
