"""Privilege separation, the workers' side: asking the spawner to act as a mail user.

What it does
    A master started as root runs its services as ``mail_owner``; such a
    worker cannot write a user's Maildir, run a user's ``|command`` or read
    ``/etc/shadow``.  It asks the spawner instead
    (:mod:`mailhorn.master.spawner`, a root process of the master), over a
    ``SOCK_SEQPACKET`` unix socket that only ``mail_owner`` can reach, to:

    * ``helper``: start a delivery helper as a mail user
      (:mod:`mailhorn.delivery.privs` speaks its protocol over a socketpair
      whose other end is passed with ``SCM_RIGHTS``;
      :func:`start_helper_sync`);
    * ``spool``: append one message to a user's ``mail_spool_directory``
      mailbox (:func:`start_spool_sync`).  The spawner, not the worker,
      decides the path and the lock settings from its own configuration, and
      a child of it that stays root (the spool is root's, as for Postfix's
      local(8)) serves exactly one ``mbox`` operation of
      :mod:`mailhorn.delivery.privs` on the passed socket: the worker sends
      the content frames only and reads the usual answer line;
    * ``command``: run a command as a mail user with the worker's pipes as
      its standard input and output (:func:`start_command`); the request's
      connection stays open as the handle of the process: the worker sends
      ``{"kill": SIGNAL}`` on it, the spawner answers the exit status;
    * ``session``: start the post-login part of an IMAP or POP3 session as
      the user, on a socketpair the worker relays the client's plaintext
      through (:func:`start_mail_process`, :func:`relay`): TLS stays in the
      worker, which never gives the TLS keys or the client socket to a
      process the user owns (Dovecot's login/mail process split);
    * ``verify``: check a password against ``/etc/shadow``; the answer is
      ``yes``, ``no``, ``unknown`` (no usable shadow entry: the next
      ``passdb_maps`` table is asked) or ``tempfail``; hashes never leave
      the spawner (:func:`verify_password`).

    Messages are one JSON object per packet (at most :data:`MAX_MESSAGE`
    octets).  Answers: ``{"ok": {...}}``, ``{"error": {"kind": K,
    "message": TEXT}}`` (``refused``: the request broke the spawner's
    rules; ``failed``: it could not be carried out, with ``errno`` when an
    exec failed), and for commands a final ``{"exit": {"code": N}}`` or
    ``{"exit": {"signal": N}}``.

    Without a spawner (:func:`active` is false: mailhorn runs as an
    ordinary user, or as root without workers) nothing here is used for
    deliveries; callers work in-process as before, and
    :func:`start_command` runs commands directly (switching uid itself when
    it is root).

Parameters read
    None; the worker calls :func:`enable` with the spawner's socket path.

Errors
    :class:`SpawnError` (``Refused`` for a refusal) when the spawner cannot
    be reached or refuses; ``OSError`` with the exec errno when a command
    cannot be started.
"""

from __future__ import annotations

import asyncio
import asyncio.streams
import base64
import contextlib
import errno
import json
import os
import pwd
import signal
import socket
from collections.abc import Callable
import subprocess
from dataclasses import dataclass
from typing import Any, Final, Protocol, TYPE_CHECKING

from mailhorn import log
from mailhorn.iopool import offload
from mailhorn.smtpd.stream import Connection

if TYPE_CHECKING:
    from mailhorn.auth.userdb import UserInfo

__all__ = [
    "MAX_MESSAGE", "CommandProcess", "MailProcess", "Refused", "SpawnError", "Target", "active", "disable",
    "enable", "needed", "relay", "start_command", "start_helper_sync", "start_mail_process", "start_spool_sync",
    "verify_password",
]

#: The largest request or answer, in octets.
MAX_MESSAGE: Final = 65536
#: Seconds to wait for the spawner's first answer.
ANSWER_TIMEOUT: Final = 30.0
#: Exit status of a command whose monitor vanished (reported as killed by SIGKILL).
_LOST: Final = -signal.SIGKILL

_socket_path: str | None = None


class SpawnError(Exception):
    """The spawner could not be asked, or could not do what was asked."""


class Refused(SpawnError):
    """The spawner refused the request (a rule of :mod:`mailhorn.master.spawner`)."""


@dataclass(frozen=True)
class Target:
    """Whom the spawner is asked to run as.

    ``kind`` says which rule applies: ``local`` (an account of the passwd
    database; local(8), also ``default_privs``), ``virtual`` (a uid of
    ``virtual_uid_maps``, at least ``virtual_minimum_uid``) or ``pipe``
    (pipe(8)'s ``user=name[:group]``).
    """

    kind: str
    user: str
    uid: int
    gid: int
    groups: tuple[int, ...]
    home: str = "/"

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "user": self.user, "uid": self.uid, "gid": self.gid,
                "groups": list(self.groups), "home": self.home}

    @classmethod
    def from_json(cls, data: object) -> Target:
        """The target a request names; ValueError when malformed."""
        if not isinstance(data, dict):
            raise ValueError("identity is not an object")
        kind, user, uid, gid = data.get("kind"), data.get("user"), data.get("uid"), data.get("gid")
        groups, home = data.get("groups"), data.get("home", "/")
        if not (isinstance(kind, str) and isinstance(user, str) and isinstance(home, str)):
            raise ValueError("identity: bad kind, user or home")
        if not (type(uid) is int and type(gid) is int and isinstance(groups, list)
                and all(type(g) is int for g in groups)):
            raise ValueError("identity: bad uid, gid or groups")
        return cls(kind, user, uid, gid, tuple(groups), home)


# -- where the spawner is ----------------------------------------------------------------

def enable(path: str) -> None:
    """Use the spawner listening on ``path`` (a worker that gave up root calls this)."""
    global _socket_path
    _socket_path = path


def disable() -> None:
    """Stop using a spawner (tests, and a process that is not a worker)."""
    global _socket_path
    _socket_path = None


def active() -> bool:
    """Whether a spawner serves this process."""
    return _socket_path is not None


def needed(uid: int) -> bool:
    """Whether acting as ``uid`` needs the spawner (a spawner exists and ``uid`` is not ours)."""
    return _socket_path is not None and uid != os.geteuid()


# -- one request ---------------------------------------------------------------------------

def _decode(packet: bytes) -> dict[str, Any]:
    if not packet:
        raise SpawnError("the spawner closed the connection")
    try:
        answer = json.loads(packet)
    except ValueError as exc:
        raise SpawnError("bad answer from the spawner") from exc
    if not isinstance(answer, dict):
        raise SpawnError("bad answer from the spawner")
    error = answer.get("error")
    if isinstance(error, dict):
        text = str(error.get("message", "error"))
        if error.get("kind") == "refused":
            raise Refused(text)
        code = error.get("errno")
        if type(code) is int:
            raise OSError(code, os.strerror(code))
        raise SpawnError(text)
    return answer


def _request_sync(message: dict[str, Any], fds: list[int]) -> tuple[socket.socket, dict[str, Any]]:
    """Send one request with ``fds``; the connection and the first answer (blocking)."""
    if _socket_path is None:
        raise SpawnError("no spawner")
    data = json.dumps(message).encode()
    if len(data) > MAX_MESSAGE:
        raise SpawnError("request too large")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        sock.settimeout(ANSWER_TIMEOUT)
        try:
            sock.connect(_socket_path)
            socket.send_fds(sock, [data], fds)
            packet = sock.recv(MAX_MESSAGE)
        except OSError as exc:
            raise SpawnError(f"spawner {_socket_path}: {exc.strerror or exc}") from exc
        return sock, _decode(packet)
    except BaseException:
        sock.close()
        raise


async def _request(message: dict[str, Any], fds: list[int]) -> tuple[socket.socket, dict[str, Any]]:
    return await offload(_request_sync, message, fds)


# -- verify ----------------------------------------------------------------------------------

async def verify_password(name: str, password: str | bytes) -> str:
    """``yes``, ``no``, ``unknown`` or ``tempfail``: ``name``'s shadow(5) password check."""
    raw = password.encode("utf-8") if isinstance(password, str) else password
    message = {"op": "verify", "user": name, "password": base64.b64encode(raw).decode("ascii")}
    try:
        sock, answer = await _request(message, [])
    except SpawnError as exc:
        log.warning(f"password check for {name}: {exc}")
        return "tempfail"
    sock.close()
    result = answer.get("ok", {}).get("result")
    return result if result in ("yes", "no", "unknown", "tempfail") else "tempfail"


# -- delivery helpers -------------------------------------------------------------------------

def _with_channel_sync(request: dict[str, Any]) -> tuple[socket.socket, dict[str, Any]]:
    """Send ``request`` with one end of a new socketpair; our end and the answer (blocking)."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock, answer = _request_sync(request, [theirs.fileno()])
    except BaseException:
        ours.close()
        raise
    finally:
        theirs.close()
    sock.close()
    return ours, answer


def start_helper_sync(target: Target) -> socket.socket:
    """A connected stream socket to a new delivery helper running as ``target`` (blocking)."""
    return _with_channel_sync({"op": "helper", "identity": target.to_json()})[0]


def start_spool_sync(user: str, uid: int, gid: int, service: str) -> tuple[socket.socket, str]:
    """A connected stream socket to a root child of the spawner that appends one
    message to ``user``'s spool mailbox, and the mailbox's path (blocking).

    ``uid``/``gid`` are what the worker found in the passwd database; the
    spawner checks them against its own lookup.  ``service`` names the
    local(8) service of master.cf whose ``-o`` settings apply.
    """
    ours, answer = _with_channel_sync({"op": "spool", "user": user, "uid": uid, "gid": gid, "service": service})
    path = answer.get("ok", {}).get("path")
    return ours, path if isinstance(path, str) else ""


# -- commands ----------------------------------------------------------------------------------

class CommandProcess(Protocol):
    """What delivery code needs of a running command (an asyncio subprocess or a spawned one)."""

    stdin: asyncio.StreamWriter | None
    stdout: asyncio.StreamReader | None

    @property
    def pid(self) -> int: ...

    @property
    def returncode(self) -> int | None: ...

    async def wait(self) -> int: ...

    def kill_group(self, signum: int) -> None: ...


class _LocalCommand:
    """A command this process started itself."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.stdin = proc.stdin
        self.stdout = proc.stdout

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def returncode(self) -> int | None:
        return self.proc.returncode

    async def wait(self) -> int:
        return await self.proc.wait()

    def kill_group(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signum)


class _PipeEnd:
    """One pipe descriptor handed to ``connect_read_pipe``/``connect_write_pipe``, closed exactly once.

    asyncio's own loop closes a pipe transport's descriptor by calling the
    file object's ``close()``; uvloop (the workers' loop) has libuv close the
    descriptor and then calls ``close()`` as well. Given a file object from
    ``os.fdopen`` that second ``close()`` hits the descriptor number again:
    harmless alone, but when another thread (a spawner request, a mail store
    call) got the same number in between, its socket or file is closed under
    it (``EBADF`` when starting a mail process, sessions cut mid-way). So
    ``close()`` here closes only where the loop does not.
    """

    def __init__(self, fd: int, loop: asyncio.AbstractEventLoop) -> None:
        self._fd = fd
        self._owned = isinstance(loop, asyncio.BaseEventLoop)  # else the loop (uvloop) closes it

    def fileno(self) -> int:
        return self._fd

    def close(self) -> None:
        fd, self._fd = self._fd, -1
        if fd >= 0 and self._owned:
            os.close(fd)


class _WriteProtocol(asyncio.streams.FlowControlMixin):
    """Flow control and a close waiter for the write end of a pipe."""

    def __init__(self) -> None:
        super().__init__()
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        if not self.closed.done():
            self.closed.set_result(None)

    def _get_close_waiter(self, stream: asyncio.StreamWriter) -> asyncio.Future[None]:
        return self.closed


class _SpawnedCommand:
    """A command the spawner started; the control socket reports its end."""

    def __init__(self, control: socket.socket, pid: int, stdin: asyncio.StreamWriter,
                 stdout: asyncio.StreamReader) -> None:
        self.control = control
        self._pid = pid
        self.stdin: asyncio.StreamWriter | None = stdin
        self.stdout: asyncio.StreamReader | None = stdout
        self._returncode: int | None = None
        self._ended = asyncio.ensure_future(self._watch())

    @property
    def pid(self) -> int:
        return self._pid

    @property
    def returncode(self) -> int | None:
        return self._returncode

    async def _watch(self) -> int:
        loop = asyncio.get_running_loop()
        try:
            packet = await loop.sock_recv(self.control, MAX_MESSAGE)
            answer = json.loads(packet) if packet else {}
        except (OSError, ValueError):
            answer = {}
        finally:
            self.control.close()
        end = answer.get("exit") if isinstance(answer, dict) else None
        code = _LOST
        if isinstance(end, dict):
            if type(end.get("code")) is int:
                code = int(end["code"])
            elif type(end.get("signal")) is int:
                code = -int(end["signal"])
        self._returncode = code
        return code

    async def wait(self) -> int:
        return await asyncio.shield(self._ended)

    def kill_group(self, signum: int) -> None:
        if self._returncode is None and self.control.fileno() >= 0:
            with contextlib.suppress(OSError):
                self.control.send(json.dumps({"kill": int(signum)}).encode())


async def _spawned_command(target: Target, argv: list[str], env: dict[str, str], cwd: str,
                           umask: int) -> _SpawnedCommand:
    loop = asyncio.get_running_loop()
    in_r, in_w = os.pipe2(os.O_CLOEXEC)
    out_r, out_w = os.pipe2(os.O_CLOEXEC)
    try:
        control, answer = await _request({"op": "command", "identity": target.to_json(), "argv": argv,
                                          "env": env, "cwd": cwd, "umask": umask}, [in_r, out_w])
    except BaseException:
        for fd in (in_w, out_r):
            os.close(fd)
        raise
    finally:
        os.close(in_r)
        os.close(out_w)
    control.setblocking(False)
    reader = asyncio.StreamReader(limit=2**16, loop=loop)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader, loop=loop), _PipeEnd(out_r, loop))
    transport, protocol = await loop.connect_write_pipe(_WriteProtocol, _PipeEnd(in_w, loop))
    writer = asyncio.StreamWriter(transport, protocol, None, loop)
    pid = answer.get("ok", {}).get("pid")
    return _SpawnedCommand(control, int(pid) if type(pid) is int else 0, writer, reader)


async def start_command(argv: list[str], *, env: dict[str, str], cwd: str, target: Target | None,
                        umask: int = 0o077) -> CommandProcess:
    """Start ``argv`` as ``target`` (None: as this process) in a new session.

    Standard input is a pipe from us, standard output and error one pipe to
    us.  ``umask`` -1 keeps ours (a spawned command then gets 022, the
    master's, as pipe(8) commands do in Postfix).  Raises ``OSError`` when the command cannot be started (a refusal
    of the spawner is ``EPERM``), :class:`SpawnError` when the spawner is
    unreachable.
    """
    if target is not None and needed(target.uid):
        try:
            return await _spawned_command(target, argv, env, cwd, umask if umask >= 0 else 0o022)
        except Refused as exc:
            raise OSError(errno.EPERM, str(exc)) from exc
    kwargs: dict[str, Any] = {}
    switch = target is not None and os.geteuid() == 0 and target.uid != 0
    if isinstance(asyncio.get_running_loop(), asyncio.BaseEventLoop):
        if switch:
            assert target is not None
            kwargs = {"user": target.uid, "group": target.gid, "extra_groups": list(target.groups)}
        kwargs["umask"] = umask
    else:
        # uvloop (the workers' loop) takes none of user=, group=, umask=: the
        # umask is set by a shell that then execs the command with its
        # arguments untouched ("$@"), and an identity switch, needed only when
        # running as root without the spawner, happens in the child before exec.
        if umask >= 0:
            argv = ["/bin/sh", "-c", f'umask {umask:03o} && exec "$@"', "sh", *argv]
        if switch:
            assert target is not None
            kwargs["preexec_fn"] = _switch_identity(target)
    proc = await asyncio.create_subprocess_exec(
        *argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, cwd=cwd,
        start_new_session=True, close_fds=True, **kwargs)
    return _LocalCommand(proc)


def _switch_identity(target: Target) -> Callable[[], None]:
    """A child-side function that takes on ``target``'s groups, gid and uid."""

    def switch() -> None:
        os.setgroups(list(target.groups))
        os.setgid(target.gid)
        os.setuid(target.uid)

    return switch


# -- mail sessions ----------------------------------------------------------------------------

def mail_target(info: UserInfo) -> Target:
    """Whom a mail process of ``info`` runs as: its account's groups, or only its gid.

    A virtual user's uid/gid come from ``virtual_uid_maps``/``virtual_gid_maps``
    and may happen to match a system account with other groups (seed 003's
    static:5000): such a user runs with only that uid and gid, as a virtual
    delivery does.
    """
    try:
        account = pwd.getpwuid(info.uid)
    except KeyError:
        account = None
    if account is not None:
        try:
            groups = tuple(sorted(set(os.getgrouplist(account.pw_name, info.gid))))
        except OSError:
            groups = (info.gid,)
        if account.pw_gid == info.gid or info.gid in groups:
            return Target("local", account.pw_name, info.uid, info.gid, groups, "/")
    return Target("virtual", info.login, info.uid, info.gid, (info.gid,), "/")


def user_state(info: UserInfo) -> dict[str, Any]:
    """``info`` as a mail process request carries it."""
    return {"login": info.login, "address": info.address, "uid": info.uid, "gid": info.gid, "home": info.home,
            "maildir": info.maildir, "quota_bytes": info.quota_bytes}


def user_info(data: object) -> UserInfo:
    """The user a mail process was given (:func:`user_state`); ValueError when malformed."""
    from mailhorn.auth.userdb import UserInfo

    if not isinstance(data, dict):
        raise ValueError("user: not an object")
    texts = {name: data.get(name) for name in ("login", "address", "home", "maildir")}
    numbers = {name: data.get(name) for name in ("uid", "gid", "quota_bytes")}
    if not all(isinstance(v, str) for v in texts.values()) or not all(type(v) is int for v in numbers.values()):
        raise ValueError("user: bad fields")
    return UserInfo(str(texts["login"]), str(texts["address"]), int(str(numbers["uid"])),
                    int(str(numbers["gid"])), str(texts["home"]), str(texts["maildir"]),
                    int(str(numbers["quota_bytes"])))


@dataclass
class MailProcess:
    """A post-login session process: our end of its socket, its pid, its log relay."""

    sock: socket.socket
    pid: int
    log_task: asyncio.Task[None]
    leftover: bytes = b""

    async def ready(self) -> str | None:
        """Wait for the process's first line: None when it serves, else its failure word."""
        loop = asyncio.get_running_loop()
        data = b""
        while b"\n" not in data and len(data) < 256:
            try:
                chunk = await loop.sock_recv(self.sock, 256 - len(data))
            except OSError:
                chunk = b""
            if not chunk:
                return "error"
            data += chunk
        line, _, self.leftover = data.partition(b"\n")
        if line == b"+":
            return None
        return line[1:].decode("ascii", "replace") or "error"

    def close(self) -> None:
        self.sock.close()


async def _relay_log(fd: int) -> None:
    """Re-log the mail process's records (``PROGRAM: [severity: ]text`` lines on its stderr)."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=2**16, loop=loop)
    transport, _ = await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader, loop=loop),
                                                _PipeEnd(fd, loop))
    try:
        while True:
            try:
                line = await reader.readline()
            except ValueError:
                continue
            if not line:
                return
            text = line.decode("utf-8", "replace").rstrip("\n")
            program, sep, body = text.partition(": ")
            if not sep:
                program, body = "", text
            for severity, emit in (("warning: ", log.warning), ("error: ", log.error), ("fatal: ", log.error),
                                   ("panic: ", log.error)):
                if body.startswith(severity):
                    emit(body[len(severity):], program=program or None)
                    break
            else:
                log.info(body, program=program or None)
    finally:
        transport.close()


async def start_mail_process(protocol: str, target: Target, overrides: dict[str, str],
                             state: dict[str, Any]) -> MailProcess:
    """Start the post-login session of ``protocol`` (``imap``, ``pop3``) as ``target``.

    ``overrides`` are the service's master.cf ``-o`` settings; ``state``
    the session facts the protocol's mail process reads (user, addresses,
    TLS).  Raises :class:`SpawnError`.
    """
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    log_r, log_w = os.pipe2(os.O_CLOEXEC)
    try:
        control, answer = await _request(
            {"op": "session", "protocol": protocol, "identity": target.to_json(), "overrides": overrides,
             "state": state}, [theirs.fileno(), log_w])
    except BaseException:
        ours.close()
        os.close(log_r)
        raise
    finally:
        theirs.close()
        os.close(log_w)
    control.close()
    ours.setblocking(False)
    pid = answer.get("ok", {}).get("pid")
    return MailProcess(ours, int(pid) if type(pid) is int else 0, asyncio.create_task(_relay_log(log_r)))


async def relay(conn: Connection, proc: MailProcess, pending: bytes) -> None:
    """Move bytes between the client and the mail process until the mail process ends.

    ``pending`` is what the client sent after its login command and the
    login process had read already; it goes first.  When the client goes
    away the mail process sees the end of its input and finishes the
    session (and logs it).
    """
    loop = asyncio.get_running_loop()
    sock = proc.sock

    async def upstream() -> None:
        try:
            if pending:
                await loop.sock_sendall(sock, pending)
            while True:
                data = await conn.read()
                if not data:
                    break
                await loop.sock_sendall(sock, data)
        except OSError:
            return
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_WR)

    async def downstream() -> None:
        if proc.leftover:
            conn.write(proc.leftover)
        while True:
            try:
                data = await loop.sock_recv(sock, 65536)
            except OSError:
                return
            if not data:
                return
            conn.write(data)
            try:
                await conn.drain()
            except ConnectionError:
                return

    up = asyncio.create_task(upstream())
    try:
        await downstream()
    finally:
        up.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await up
        sock.close()
        with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
            await asyncio.wait_for(asyncio.shield(proc.log_task), 5)
