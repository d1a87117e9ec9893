"""The POP3 state machine (RFC 1939 §3): AUTHORIZATION, TRANSACTION, UPDATE.

What it does
    :class:`Pop3Session` is sans-I/O (design.md §5 rule 1): the server gives
    it each :class:`~mailhorn.pop3.codec.Command` (:meth:`~Pop3Session.handle`)
    and carries out the :data:`Action` it returns:

    * :class:`Reply`: write ``data``; close after it when ``close`` is set;
    * :class:`StartTls`: write ``data`` (``+OK Begin TLS negotiation now.``),
      discard buffered input, run the handshake, then call
      :meth:`~Pop3Session.tls_started` (RFC 2595 §4);
    * :class:`CheckLogin`: verify the credentials (USER/PASS or a finished
      SASL exchange, RFC 5034), open and lock the maildrop, then call
      :meth:`~Pop3Session.login_succeeded` with a :class:`Maildrop` snapshot
      or :meth:`~Pop3Session.login_failed` with the ``-ERR`` text;
    * :class:`Retrieve`: stream message ``entry`` (RETR, or TOP with
      ``body_lines``) after ``first`` and end it with ``.``; report the
      octets with :meth:`~Pop3Session.sent`;
    * :class:`Update`: QUIT in TRANSACTION: expunge :attr:`Maildrop.deleted`,
      mark :attr:`Maildrop.retrieved` seen, then write ``data`` and close.
      Deletions happen only here: a connection that ends any other way
      leaves the maildrop as it was (RFC 1939 §6).

    The replies and their texts are Dovecot 2.3's, so clients and log
    watchers written for Dovecot see what they know: ``-ERR [AUTH]
    Authentication failed.``, ``-ERR [AUTH] Plaintext authentication
    disallowed on non-secure (SSL/TLS) connections.``, ``+OK Logged in.``,
    ``-ERR There's no message 9.``, ``+OK 43 octets``, ``+OK Marked to be
    deleted.``, ``+OK Logging out, messages deleted.``.  Response codes:
    RFC 2449 §8 (``IN-USE``, ``SYS/TEMP``, ``SYS/PERM``) and RFC 3206
    (``AUTH``).

    APOP (RFC 1939 §7) is not offered: it needs the password in clear text
    on the server, and Dovecot 2.3 offers it only when configured; the
    command is answered as unknown.

    Bad commands: before login the third unknown command closes the
    connection (``-ERR Too many invalid bad commands.``), after login the
    twentieth, as Dovecot does.

Parameters
    None read here: the server passes :class:`Pop3Options`.

Errors
    None: every input gives an answer.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field

from mailhorn.auth import sasl
from mailhorn.mailstore.maildir import Message
from mailhorn.pop3.codec import Command, err, multiline, ok

#: Unknown commands allowed before login, and after it (Dovecot's limits).
MAX_BAD_LOGIN = 3
MAX_BAD_TRANSACTION = 20
#: Dovecot's message numbers are unsigned 32-bit.
MAX_MSGNUM = 2**32 - 1

AUTH_FAILED_TEXT = "[AUTH] Authentication failed."
PLAINTEXT_DISALLOWED = "[AUTH] Plaintext authentication disallowed on non-secure (SSL/TLS) connections."
TEMPFAIL_TEXT = "[SYS/TEMP] Temporary authentication failure."
IN_USE_TEXT = "[IN-USE] Mailbox is locked by another POP3 session."
INTERNAL_ERROR_TEXT = "[SYS/TEMP] Internal error occurred. Refer to server log for more information."


class State(enum.Enum):
    """RFC 1939 §3 session states."""

    AUTHORIZATION = "AUTHORIZATION"
    TRANSACTION = "TRANSACTION"
    UPDATE = "UPDATE"


@dataclass(frozen=True)
class Entry:
    """One message of the maildrop: its number, size with CRLF line ends, and UIDL."""

    number: int
    message: Message
    size: int
    uidl: str


@dataclass
class Maildrop:
    """The snapshot a POP3 session works on (RFC 1939 §4: fixed at login)."""

    entries: list[Entry]
    deleted: set[int] = field(default_factory=set)
    retrieved: set[int] = field(default_factory=set)

    @property
    def total_size(self) -> int:
        return sum(e.size for e in self.entries)

    def live(self) -> list[Entry]:
        return [e for e in self.entries if e.number not in self.deleted]


@dataclass(frozen=True)
class Pop3Options:
    """What the server decides for one connection."""

    greeting: str = "mailhorn ready."
    mechanisms: tuple[str, ...] = ("PLAIN",)
    plaintext_allowed: bool = False   # TLS, loopback, or disable_plaintext_auth = no
    tls_available: bool = False       # STLS can be offered (a certificate, not yet TLS)
    tls_active: bool = False
    hostname: str = "localhost"
    response_limit: int = sasl.DEFAULT_RESPONSE_LIMIT


# --- actions ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Reply:
    data: bytes
    close: bool = False


@dataclass(frozen=True)
class StartTls:
    data: bytes


@dataclass(frozen=True)
class CheckLogin:
    """Verify a login: ``password`` for USER/PASS, PLAIN, LOGIN; ``credentials`` as SASL gave them."""

    login: str
    method: str
    credentials: sasl.Credentials


@dataclass(frozen=True)
class Retrieve:
    first: bytes
    entry: Entry
    body_lines: int | None
    kind: str  # "retr" or "top"


@dataclass(frozen=True)
class Update:
    data: bytes


Action = Reply | StartTls | CheckLogin | Retrieve | Update


class ArgError(Exception):
    """A message-number or size argument Dovecot would refuse; the text is the -ERR text."""


# --- capabilities ----------------------------------------------------------------------

def capabilities(state: State, options: Pop3Options) -> list[str]:
    """RFC 2449 §5 CAPA lines, in Dovecot's order."""
    caps = ["CAPA", "TOP", "UIDL", "RESP-CODES", "PIPELINING", "AUTH-RESP-CODE"]
    if state is State.AUTHORIZATION:
        if options.tls_available and not options.tls_active:
            caps.append("STLS")
        if options.plaintext_allowed:
            caps.append("USER")
        offered = sasl.offered_mechanisms(list(options.mechanisms), options.plaintext_allowed)
        caps.append(" ".join(["SASL", *offered]))
    return caps


# --- argument parsing (Dovecot's get_msgnum/get_size) ---------------------------------

def _digits(text: str) -> int:
    n = 0
    while n < len(text) and "0" <= text[n] <= "9":
        n += 1
    return n


def parse_msgnum(args: str, last: bool) -> tuple[int, str]:
    """A message number and the remaining arguments; ArgError with Dovecot's text."""
    n = _digits(args)
    if n == 0:
        raise ArgError(f"Invalid message number: {args}")
    rest = args[n:]
    number = int(args[:n])
    if number > MAX_MSGNUM:
        raise ArgError(f"Message number too large: {rest}")
    if last:
        if rest:
            raise ArgError(f"Noise after message number: {rest}")
    else:
        if not rest.startswith(" "):
            raise ArgError(f"Noise after message number: {rest}")
        rest = rest.lstrip(" ")
    return number, rest


def parse_size(args: str) -> int:
    n = _digits(args)
    if n == 0 or n != len(args):
        raise ArgError(f"Invalid size: {args}")
    return min(int(args), 2**63 - 1)


# --- the session -----------------------------------------------------------------------

class Pop3Session:
    """One POP3 connection's protocol state."""

    def __init__(self, options: Pop3Options) -> None:
        self.options = options
        self.state = State.AUTHORIZATION
        self.user: str | None = None          # USER's argument, waiting for PASS
        self.login: str | None = None          # the canonical user after login
        self.mechanism: sasl.Mechanism | None = None
        self.maildrop: Maildrop | None = None
        self.bad_commands = 0
        self.auth_attempts = 0
        self.last_method = ""
        self.last_login = ""
        # Logout statistics (pop3_logout_format): counts and octets.
        self.top_count = self.top_bytes = 0
        self.retr_count = self.retr_bytes = 0
        self.deleted_count = 0

    # -- greeting and events from the server --------------------------------------
    def greeting(self) -> bytes:
        return ok(self.options.greeting)

    def tls_started(self, options: Pop3Options) -> None:
        """The handshake finished; ``options`` now says TLS (and, usually, plaintext allowed)."""
        self.options = options
        self.user = None

    def login_succeeded(self, user: str, maildrop: Maildrop) -> bytes:
        self.state = State.TRANSACTION
        self.login = user
        self.maildrop = maildrop
        self.bad_commands = 0
        return ok("Logged in.")

    def login_failed(self, text: str) -> bytes:
        self.user = None
        return err(text)

    def sent(self, kind: str, octets: int) -> None:
        """Count a RETR or TOP answer: ``octets`` from ``+OK`` to before the terminator."""
        if kind == "retr":
            self.retr_count += 1
            self.retr_bytes += octets
        else:
            self.top_count += 1
            self.top_bytes += octets

    # -- commands -----------------------------------------------------------------
    def handle(self, command: Command) -> Action:
        """Answer one line."""
        if self.mechanism is not None:
            return self._sasl_step(command.line)
        if self.state is State.AUTHORIZATION:
            return self._authorization(command)
        if self.state is State.TRANSACTION:
            return self._transaction(command)
        return Reply(err("Unknown command."), close=True)

    def _bad_login(self, reply: bytes) -> Reply:
        self.bad_commands += 1
        if self.bad_commands >= MAX_BAD_LOGIN:
            return Reply(reply + err("Too many invalid bad commands."), close=True)
        return Reply(reply)

    def _authorization(self, command: Command) -> Action:
        handler = _AUTHORIZATION_COMMANDS.get(command.name)
        if handler is None:
            return self._bad_login(err("Unknown command."))
        return handler(self, command.args)

    def _capa(self, _args: str) -> Action:
        return Reply(multiline(ok(), capabilities(self.state, self.options)))

    def _quit_login(self, _args: str) -> Action:
        return Reply(ok("Logging out."), close=True)

    def _stls(self, _args: str) -> Action:
        if self.options.tls_active:
            return Reply(err("TLS is already active."))
        if not self.options.tls_available:
            return Reply(err("TLS support isn't enabled."))
        return StartTls(ok("Begin TLS negotiation now."))

    def _user(self, args: str) -> Action:
        if not self.options.plaintext_allowed:
            return Reply(err(PLAINTEXT_DISALLOWED))
        if not args:
            return Reply(err("No username given."))
        self.user = args
        return Reply(ok())

    def _pass(self, args: str) -> Action:
        if self.user is None:
            return Reply(err("No username given."))
        if not self.options.plaintext_allowed:
            return Reply(err(PLAINTEXT_DISALLOWED))
        user, self.user = self.user, None
        return self._check(sasl.Credentials("PLAIN", user, password=args))

    def _auth(self, args: str) -> Action:
        if not args:
            offered = sasl.offered_mechanisms(list(self.options.mechanisms), self.options.plaintext_allowed)
            return Reply(multiline(ok(), offered))
        name, _sep, initial = args.partition(" ")
        name = name.upper()
        if name not in self.options.mechanisms:
            return Reply(err("[AUTH] Unsupported authentication mechanism."))
        if name in sasl.PLAINTEXT_MECHANISMS and not self.options.plaintext_allowed:
            return Reply(err("[AUTH] Plaintext authentication disabled."))
        mechanism = sasl.new_mechanism(name, self.options.hostname, self.options.response_limit)
        self.mechanism = mechanism
        return self._sasl_result(lambda: mechanism.start(initial if initial else None))

    def _sasl_step(self, line: str) -> Action:
        mechanism = self.mechanism
        assert mechanism is not None
        return self._sasl_result(lambda: mechanism.step(line))

    def _sasl_result(self, step: Callable[[], sasl.Step]) -> Action:
        try:
            result = step()
        except sasl.SaslCancelled:
            self.mechanism = None
            return Reply(err("Authentication aborted by client."))
        except sasl.SaslRefused:
            self.mechanism = None
            self.auth_attempts += 1
            return Reply(err(AUTH_FAILED_TEXT))
        except sasl.SaslSyntaxError as exc:
            self.mechanism = None
            text = "Invalid base64 in response" if "base64" in str(exc) else "Invalid response"
            return Reply(err(f"[AUTH] {text}"))
        if isinstance(result, sasl.Challenge):
            return Reply(f"+ {result.encoded()}\r\n".encode("ascii"))
        assert isinstance(result, sasl.Credentials)
        self.mechanism = None
        return self._check(result)

    def _check(self, credentials: sasl.Credentials) -> Action:
        self.auth_attempts += 1
        self.last_method = credentials.mechanism
        self.last_login = credentials.authcid
        return CheckLogin(credentials.authcid, credentials.mechanism, credentials)

    # -- TRANSACTION ----------------------------------------------------------------
    def _transaction(self, command: Command) -> Action:
        handler = _TRANSACTION_COMMANDS.get(command.name)
        if handler is None:
            text = f"Unknown command: {command.name}" if command.name else "Unknown command."
            self.bad_commands += 1
            if self.bad_commands >= MAX_BAD_TRANSACTION:
                return Reply(err(text) + err("Too many bad commands."), close=True)
            return Reply(err(text))
        try:
            return handler(self, command.args)
        except ArgError as exc:
            return Reply(err(str(exc)))

    @property
    def _drop(self) -> Maildrop:
        assert self.maildrop is not None
        return self.maildrop

    def _entry(self, args: str, last: bool) -> tuple[Entry, str]:
        number, rest = parse_msgnum(args, last)
        entries = self._drop.entries
        if number == 0 or number > len(entries):
            raise ArgError(f"There's no message {number}.")
        if number in self._drop.deleted:
            raise ArgError("Message is deleted.")
        return entries[number - 1], rest

    def _stat(self, _args: str) -> Action:
        live = self._drop.live()
        return Reply(ok(f"{len(live)} {sum(e.size for e in live)}"))

    def _list(self, args: str) -> Action:
        if args:
            entry, _ = self._entry(args, True)
            return Reply(ok(f"{entry.number} {entry.size}"))
        live = self._drop.live()
        return Reply(multiline(ok(f"{len(live)} messages:"), (f"{e.number} {e.size}" for e in live)))

    def _uidl(self, args: str) -> Action:
        if args:
            entry, _ = self._entry(args, True)
            return Reply(ok(f"{entry.number} {entry.uidl}"))
        return Reply(multiline(ok(), (f"{e.number} {e.uidl}" for e in self._drop.live())))

    def _retr(self, args: str) -> Action:
        entry, _ = self._entry(args, True)
        self._drop.retrieved.add(entry.number)
        return Retrieve(ok(f"{entry.size} octets"), entry, None, "retr")

    def _top(self, args: str) -> Action:
        entry, rest = self._entry(args, False)
        lines = parse_size(rest)
        return Retrieve(ok(), entry, lines, "top")

    def _dele(self, args: str) -> Action:
        entry, _ = self._entry(args, True)
        self._drop.deleted.add(entry.number)
        return Reply(ok("Marked to be deleted."))

    def _noop(self, _args: str) -> Action:
        return Reply(ok())

    def _rset(self, _args: str) -> Action:
        self._drop.deleted.clear()
        self._drop.retrieved.clear()
        return Reply(ok())

    def _quit(self, _args: str) -> Action:
        self.state = State.UPDATE
        self.deleted_count = len(self._drop.deleted)
        text = "Logging out, messages deleted." if self._drop.deleted else "Logging out."
        return Update(ok(text))

    # -- logout statistics ----------------------------------------------------------
    def logout_variables(self) -> dict[str, str]:
        """Dovecot's pop3_logout_format variables."""
        drop = self.maildrop
        return {
            "t": str(self.top_count), "p": str(self.top_bytes),
            "r": str(self.retr_count), "b": str(self.retr_bytes),
            "d": str(self.deleted_count if self.state is State.UPDATE else 0),
            "m": str(len(drop.entries) if drop else 0),
            "s": str(drop.total_size if drop else 0),
        }


#: A command handler: the session and the arguments after the keyword.
Handler = Callable[[Pop3Session, str], Action]

#: AUTHORIZATION state commands (RFC 1939 §4, RFC 2449 CAPA, RFC 2595 STLS, RFC 5034 AUTH).
_AUTHORIZATION_COMMANDS: dict[str, Handler] = {
    "CAPA": Pop3Session._capa,
    "QUIT": Pop3Session._quit_login,
    "STLS": Pop3Session._stls,
    "USER": Pop3Session._user,
    "PASS": Pop3Session._pass,
    "AUTH": Pop3Session._auth,
}
#: TRANSACTION state commands (RFC 1939 §5, §7).
_TRANSACTION_COMMANDS: dict[str, Handler] = {
    "CAPA": Pop3Session._capa,
    "STAT": Pop3Session._stat,
    "LIST": Pop3Session._list,
    "UIDL": Pop3Session._uidl,
    "RETR": Pop3Session._retr,
    "TOP": Pop3Session._top,
    "DELE": Pop3Session._dele,
    "NOOP": Pop3Session._noop,
    "RSET": Pop3Session._rset,
    "QUIT": Pop3Session._quit,
}
