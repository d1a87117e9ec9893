"""smtpd access restrictions (Postfix's smtpd_check): the engine.

``SmtpdChecks(config, resolver)`` answers ``await check(stage, state)``
with a :class:`~mailhorn.smtpd.state.CheckResult`.  What runs when
(postconf(5), SMTPD_ACCESS_README):

* CONNECT, HELO/EHLO, MAIL: ``smtpd_client_restrictions``,
  ``smtpd_helo_restrictions``, ``smtpd_sender_restrictions`` run here only
  with ``smtpd_delay_reject = no``;
* RCPT (and VRFY): with ``smtpd_delay_reject = yes`` the client, helo (when
  the client said HELO/EHLO) and sender lists first, then
  ``smtpd_relay_restrictions`` and ``smtpd_recipient_restrictions`` (in the
  order ``smtpd_relay_before_recipient_restrictions`` says), then the
  implicit ``reject_unlisted_recipient`` (``smtpd_reject_unlisted_recipient``)
  and ``reject_unlisted_sender`` (``smtpd_reject_unlisted_sender``);
* DATA, END-OF-MESSAGE, ETRN: ``smtpd_data_restrictions``,
  ``smtpd_end_of_data_restrictions``, ``smtpd_etrn_restrictions``.

Addresses in the state are in internal form (unquoted, no source route),
as smtpd keeps them and as replies echo them (``<x y@example.com>``).

Each list is read left to right; OK/permit ends that list only, a reject
or defer ends the evaluation.  ``warn_if_reject`` turns the next
restriction's refusal into a ``reject_warning`` action (logged by smtpd).
``defer_if_reject`` turns a later refusal of the same list into ``450 4.7.0
... defer_if_reject requested``; ``defer_if_permit`` defers the request when
the evaluation ends without a refusal.  Names in ``smtpd_restriction_classes``
are restriction lists usable in lists and as access(5) results.  After an
access(5) DISCARD no further restriction runs in the transaction.

A misconfigured restriction (unknown name, missing argument) gives ``451
4.3.5 Server configuration error`` and a warning, as Postfix does.

Restrictions live in the modules ``checks_access`` (access(5) tables),
``checks_addr`` (address syntax, unlisted addresses, login maps),
``checks_dns`` (DNS and DNSBL), ``checks_misc`` (TLS, SASL, bounces, backup
MX), and :mod:`mailhorn.smtpd.policy`
(``check_policy_service``); the generic ones are here.

Parameters read: the ``smtpd_*_restrictions`` lists above,
``smtpd_restriction_classes`` and each class, ``smtpd_delay_reject``,
``smtpd_relay_before_recipient_restrictions``, ``mynetworks``,
``reject_code``, ``defer_code``, ``relay_domains_reject_code`` and those of
the restriction modules.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from mailhorn import log
from mailhorn.config.errors import ConfigError
from mailhorn.config.load import Config
from mailhorn.config.maincf import split_list
from mailhorn.dns.resolver import Resolver
from mailhorn.smtp.reply import Reply
from mailhorn.smtpd import checks_access, checks_addr, checks_dns, checks_misc
from mailhorn.smtpd.checks_core import (
    PERMIT,
    SERVER_CONFIG_ERROR,
    Handler,
    ListCtx,
    Outcome,
    Permit,
    Run,
    rejection,
)
from mailhorn.smtpd.checks_resolve import Resolver as AddressResolver
from mailhorn.smtpd.policy import PolicyClients
from mailhorn.smtpd.state import Action, CheckResult, SmtpdState, Stage
from mailhorn.tables.base import TableRetry
from mailhorn.tables.matchlist import MatchListRetry, NamadrList, namadr_list_from_config

__all__ = ["SmtpdChecks"]


@dataclass(frozen=True)
class Restriction:
    """One entry of the restriction table."""

    handler: Handler
    takes_arg: bool = False


def temporary_failure(name: str) -> Reply:
    """A match list (mynetworks, domain lists) that could not be searched: defer."""
    return Reply.of(451, "4.3.0", f"<{name}>: Temporary lookup failure")


# -- generic restrictions -----------------------------------------------------

async def _permit(eng: SmtpdChecks, run: Run, ctx: ListCtx, arg: str) -> Outcome:
    return PERMIT


async def _reject(eng: SmtpdChecks, run: Run, ctx: ListCtx, arg: str) -> Outcome:
    return rejection(eng.config.int("reject_code"), "5.7.1", ctx.name(run.state), ctx.klass, "Access denied")


async def _defer(eng: SmtpdChecks, run: Run, ctx: ListCtx, arg: str) -> Outcome:
    return rejection(eng.config.int("defer_code"), "4.3.2", ctx.name(run.state), ctx.klass, "Try again later")


async def _defer_if_permit(eng: SmtpdChecks, run: Run, ctx: ListCtx, arg: str) -> Outcome:
    if run.defer_if_permit is None:
        run.defer_if_permit = rejection(eng.config.int("defer_code"), "4.7.0", ctx.name(run.state), ctx.klass,
                                        "defer_if_permit requested")
    return None


async def _defer_if_reject(eng: SmtpdChecks, run: Run, ctx: ListCtx, arg: str) -> Outcome:
    if ctx.defer_if_reject is None:
        ctx.defer_if_reject = rejection(eng.config.int("defer_code"), "4.7.0", ctx.name(run.state), ctx.klass,
                                        "defer_if_reject requested")
    return None


async def _permit_mynetworks(eng: SmtpdChecks, run: Run, ctx: ListCtx, arg: str) -> Outcome:
    st = run.state
    try:
        return PERMIT if eng.mynetworks.match(st.client_name, st.client_addr) else None
    except MatchListRetry:
        return temporary_failure(f"{st.client_name}[{st.client_addr}]")


async def _permit_sasl_authenticated(eng: SmtpdChecks, run: Run, ctx: ListCtx, arg: str) -> Outcome:
    return PERMIT if run.state.sasl_username else None


async def _auth_destination(eng: SmtpdChecks, run: Run) -> bool | Reply:
    recipient = run.state.recipient
    assert recipient is not None
    try:
        return eng.addresses.resolve(recipient).authorized
    except MatchListRetry:
        return temporary_failure(recipient)


async def _permit_auth_destination(eng: SmtpdChecks, run: Run, ctx: ListCtx, arg: str) -> Outcome:
    if run.state.recipient is None:
        return None
    ok = await _auth_destination(eng, run)
    if isinstance(ok, Reply):
        return ok
    return PERMIT if ok else None


def _unauth(code: int, dsn: str) -> Handler:
    async def handler(eng: SmtpdChecks, run: Run, ctx: ListCtx, arg: str) -> Outcome:
        recipient = run.state.recipient
        if recipient is None:
            return None
        ok = await _auth_destination(eng, run)
        if isinstance(ok, Reply):
            return ok
        if ok:
            return None
        return Reply.of(eng.config.int("relay_domains_reject_code") if code == 5 else eng.config.int("defer_code"),
                        dsn, f"<{recipient}>: Relay access denied")
    return handler


async def _reject_unauth_pipelining(eng: SmtpdChecks, run: Run, ctx: ListCtx, arg: str) -> Outcome:
    if not run.state.pipelined:
        return None
    return rejection(503, "5.5.0", ctx.name(run.state), ctx.klass, "Improper use of SMTP command pipelining")


async def _check_policy_service(eng: SmtpdChecks, run: Run, ctx: ListCtx, arg: str) -> Outcome:
    try:
        result = await eng.policy.query(arg, run.stage, run.state)
    except ConfigError as exc:
        log.warning(str(exc))
        return SERVER_CONFIG_ERROR
    return await checks_access.apply_result(eng, run, ctx, result, f"policy query {arg}", ctx.name(run.state),
                                            ctx.klass)


RESTRICTIONS: Final[dict[str, Restriction]] = {
    "permit": Restriction(_permit),
    "reject": Restriction(_reject),
    "defer": Restriction(_defer),
    "defer_if_permit": Restriction(_defer_if_permit),
    "defer_if_reject": Restriction(_defer_if_reject),
    "permit_mynetworks": Restriction(_permit_mynetworks),
    "permit_sasl_authenticated": Restriction(_permit_sasl_authenticated),
    "permit_auth_destination": Restriction(_permit_auth_destination),
    "reject_unauth_destination": Restriction(_unauth(5, "5.7.1")),
    "defer_unauth_destination": Restriction(_unauth(4, "4.7.1")),
    "reject_unauth_pipelining": Restriction(_reject_unauth_pipelining),
    "check_policy_service": Restriction(_check_policy_service, True),
    **{name: Restriction(h, arg) for name, (h, arg) in checks_access.RESTRICTIONS.items()},
    **{name: Restriction(h, arg) for name, (h, arg) in checks_addr.RESTRICTIONS.items()},
    **{name: Restriction(h, arg) for name, (h, arg) in checks_dns.RESTRICTIONS.items()},
    **{name: Restriction(h, arg) for name, (h, arg) in checks_misc.RESTRICTIONS.items()},
}

#: Stage lists: (list kind, parameter).
_CLIENT: Final = ("client", "smtpd_client_restrictions")
_HELO: Final = ("helo", "smtpd_helo_restrictions")
_SENDER: Final = ("sender", "smtpd_sender_restrictions")
_RELAY: Final = ("relay", "smtpd_relay_restrictions")
_RECIPIENT: Final = ("recipient", "smtpd_recipient_restrictions")


#: A list a stage runs: (list kind, parameter, its restriction words).
_Planned = tuple[str, str, list[str]]
#: A stage that passes without a word: no reply, no actions.
PASSED: Final = CheckResult()
_NO_IMPLICIT: Final = (False, False)
#: Stages outside a mail transaction: a DISCARD earlier does not pass them.
_NEVER_DISCARDED: Final = frozenset((Stage.CONNECT, Stage.EHLO, Stage.HELO, Stage.ETRN))


class SmtpdChecks:
    """The restriction engine for one smtpd service configuration."""

    def __init__(self, config: Config, resolver: Resolver | None = None) -> None:
        self.config = config
        self.resolver = resolver if resolver is not None else Resolver.from_config(config)
        self.policy = PolicyClients(config)
        self._lists: dict[str, list[str]] = {}
        # Built at first use and kept in plain attributes, not with
        # functools.cached_property: that needs an instance __dict__, which
        # the compiled class (scripts/build_native.py) has not.
        self._mynetworks: NamadrList | None = None
        self._addresses: AddressResolver | None = None
        self._classes: frozenset[str] | None = None
        self._plans: dict[tuple[Stage, bool], tuple[_Planned, ...]] | None = None
        self._implicit: tuple[bool, bool, bool] | None = None

    @property
    def mynetworks(self) -> NamadrList:
        if self._mynetworks is None:
            self._mynetworks = namadr_list_from_config(self.config, "mynetworks")
        return self._mynetworks

    @property
    def addresses(self) -> AddressResolver:
        if self._addresses is None:
            self._addresses = AddressResolver(self.config)
        return self._addresses

    @property
    def classes(self) -> frozenset[str]:
        if self._classes is None:
            self._classes = frozenset(self.config.list("smtpd_restriction_classes"))
        return self._classes

    # -- entry point ------------------------------------------------------
    async def check(self, stage: Stage, state: SmtpdState) -> CheckResult:
        """Run the restrictions of ``stage`` against ``state``."""
        if state.discarded_instance == state.instance and stage not in _NEVER_DISCARDED:
            return PASSED
        plan = self._plan(stage, state)
        implicit = self._implicit_checks(stage)
        if not plan and not implicit:
            return PASSED  # nothing to evaluate: most stages of most sessions
        run = Run(stage, state)
        reply = await self._stage(run, plan, implicit)
        if reply is None and run.defer_if_permit is not None:
            reply = run.defer_if_permit
        if run.discard:
            state.discarded_instance = state.instance
        if reply is None and not run.actions:
            return PASSED
        return CheckResult(reply, tuple(run.actions))

    def _tokens(self, param: str) -> list[str]:
        """The words of a restriction list parameter, split once per service."""
        tokens = self._lists.get(param)
        if tokens is None:
            tokens = self._lists[param] = split_list(self.config.get(param))
        return tokens

    def _make_plans(self) -> dict[tuple[Stage, bool], tuple[_Planned, ...]]:
        """The lists each stage runs, worked out once per service (see the module doc).

        Keyed by stage and whether the client said HELO/EHLO (the helo list
        runs at RCPT only then). Empty lists are left out: they cannot
        change the outcome.
        """
        delay = self.config.bool("smtpd_delay_reject")
        relay_first = self.config.bool("smtpd_relay_before_recipient_restrictions")
        plans: dict[tuple[Stage, bool], tuple[_Planned, ...]] = {}
        for stage in Stage:
            for helo in (False, True):
                lists: list[tuple[str, str]] = []
                if stage is Stage.CONNECT:
                    lists = [] if delay else [_CLIENT]
                elif stage in (Stage.HELO, Stage.EHLO):
                    lists = [] if delay else [_HELO]
                elif stage is Stage.MAIL:
                    lists = [] if delay else [_SENDER]
                elif stage in (Stage.RCPT, Stage.VRFY):
                    if delay:
                        lists = [_CLIENT] + ([_HELO] if helo else []) + [_SENDER]
                    lists += [_RELAY, _RECIPIENT] if relay_first else [_RECIPIENT, _RELAY]
                elif stage is Stage.DATA:
                    lists = [("data", "smtpd_data_restrictions")]
                elif stage is Stage.END_OF_MESSAGE:
                    lists = [("end_of_data", "smtpd_end_of_data_restrictions")]
                elif stage is Stage.ETRN:
                    lists = [("etrn", "smtpd_etrn_restrictions")]
                plans[stage, helo] = tuple((kind, param, tokens) for kind, param in lists
                                           if (tokens := self._tokens(param)))
        return plans

    def _plan(self, stage: Stage, state: SmtpdState) -> tuple[_Planned, ...]:
        plans = self._plans
        if plans is None:
            plans = self._plans = self._make_plans()
        return plans[stage, state.helo_name is not None]

    @property
    def _implicit_flags(self) -> tuple[bool, bool, bool]:
        """(runs at MAIL, unlisted sender, unlisted recipient): smtpd_reject_unlisted_* (postconf(5))."""
        if self._implicit is None:
            self._implicit = (not self.config.bool("smtpd_delay_reject"),
                              self.config.bool("smtpd_reject_unlisted_sender"),
                              self.config.bool("smtpd_reject_unlisted_recipient"))
        return self._implicit

    def _implicit_checks(self, stage: Stage) -> tuple[bool, bool]:
        """Whether (reject_unlisted_sender, reject_unlisted_recipient) run implicitly at ``stage``."""
        at_mail, sender, recipient = self._implicit_flags
        if stage in (Stage.RCPT, Stage.VRFY):
            return (sender, recipient) if sender or recipient else _NO_IMPLICIT
        if stage is Stage.MAIL and at_mail and sender:
            return (True, False)
        return _NO_IMPLICIT

    async def _stage(self, run: Run, plan: tuple[_Planned, ...], implicit: tuple[bool, bool]) -> Reply | None:
        for kind, param, tokens in plan:
            outcome = await self.run_list(run, ListCtx(kind), tokens, param)
            if isinstance(outcome, Reply):
                return outcome
            if run.discard:
                return None
        sender, recipient = implicit
        if sender and run.state.sender:
            outcome = await checks_addr.unlisted(self, run, "sender")
            if isinstance(outcome, Reply):
                return outcome
        if recipient:
            outcome = await checks_addr.unlisted(self, run, "recipient")
            if isinstance(outcome, Reply):
                return outcome
        return None

    # -- lists ------------------------------------------------------------
    async def run_list(self, run: Run, ctx: ListCtx, tokens: list[str], where: str) -> Outcome:
        """Evaluate one restriction list; PERMIT, a refusal, or None (end of list)."""
        run.depth += 1
        try:
            if run.depth > 100:
                log.warning(f"{where}: restriction class nesting too deep")
                return SERVER_CONFIG_ERROR
            i = 0
            while i < len(tokens):
                name = tokens[i]
                i += 1
                if name.lower() == "warn_if_reject":
                    ctx.warn = True
                    continue
                warn, ctx.warn = ctx.warn, False
                entry = RESTRICTIONS.get(name.lower()) if name not in self.classes else None
                arg = ""
                if entry is not None and entry.takes_arg:
                    if i >= len(tokens):
                        log.warning(f"restriction {name} requires {where} argument")
                        return SERVER_CONFIG_ERROR
                    arg = tokens[i]
                    i += 1
                try:
                    if entry is not None:
                        outcome = await entry.handler(self, run, ctx, arg)
                    elif name in self.classes:
                        outcome = await self.run_list(run, ctx, split_list(self.config.get(name)), name)
                    else:
                        log.warning(f"unknown smtpd restriction: \"{name}\"")
                        outcome = SERVER_CONFIG_ERROR
                except TableRetry as exc:
                    log.warning(f"{name}: {exc}")
                    outcome = temporary_failure(ctx.name(run.state))
                if run.discard:
                    return PERMIT
                if isinstance(outcome, Permit):
                    return PERMIT
                if isinstance(outcome, Reply):
                    refused = self.refuse(run, ctx, outcome, warn)
                    if refused is not None:
                        return refused
            return None
        finally:
            run.depth -= 1

    def refuse(self, run: Run, ctx: ListCtx, reply: Reply, warn: bool) -> Reply | None:
        """Apply warn_if_reject and defer_if_reject to a refusal."""
        if warn:
            run.actions.append(Action("REJECT_WARNING", str(reply)))
            return None
        if reply.code >= 500 and ctx.defer_if_reject is not None:
            return ctx.defer_if_reject
        return reply

    async def evaluate_value(self, run: Run, ctx: ListCtx, value: str, where: str) -> Outcome:
        """An access(5) result that is a restriction list or class name."""
        return await self.run_list(run, ctx, split_list(value), where)
