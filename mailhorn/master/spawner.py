"""The spawner: the one root process of a running mail system after start-up.

What it does
    A master started as root forks the spawner before its workers (which
    run as ``mail_owner``) and restarts it when it dies.  The spawner
    accepts requests on a ``SOCK_SEQPACKET`` unix socket and does, on
    behalf of the workers, the few things that need root (the protocol and
    the client side are in :mod:`mailhorn.privsep`):

    ``verify``
        check a password against ``/etc/shadow`` for passdb's
        ``unix:shadow.byname``; the answer is yes/no/unknown/tempfail and
        the hash never leaves the spawner.  An unknown account costs one
        verification of a stand-in hash, like a wrong password.
    ``helper``
        become a mail user and serve :mod:`mailhorn.delivery.privs`
        requests (Maildir, mbox, reading ``.forward``) on the passed socket.
    ``spool``
        append one message to a user's ``mail_spool_directory`` mailbox
        (mbox), as root, as Postfix's local(8) does: the spool (``/var/mail``,
        ``root:mail`` 2775) is not the worker's to write.  The request names
        only the user, the uid and gid the worker found, and the local(8)
        service; the path, the locks, the size limit and the ownership rule
        come from the spawner's own main.cf and that service's ``-o``
        settings in master.cf (:func:`spool_parameters`).  The child then
        serves exactly one ``mbox`` operation of :mod:`mailhorn.delivery.privs`
        on the passed socket, creating the mailbox for the user, and exits.
    ``command``
        become a mail user and run a command (``|command`` aliases,
        ``mailbox_command``, pipe(8)) in a new session with the passed pipes
        as standard input and output; the connection stays open to carry
        ``kill`` requests in and the exit status out.
    ``session``
        become a mail user and run the post-login part of an IMAP or POP3
        session (:data:`SESSIONS`) on the passed socket, with the passed
        pipe as the log channel.

    Each accepted connection is served by a child forked for it, so a slow
    or hostile request never stalls the spawner and a password check runs
    in parallel with others.  The child reads one request, checks it,
    answers, and (except for ``verify`` and ``spool``) gives up root for
    good before it does anything with a path, a file or a program the
    request names; ``spool`` names no path.

Security rules
    * The socket lives in ``process_id_directory/privsep/`` (mode 0710,
      owner root, group ``mail_owner``'s group) and is itself mode 0600,
      owned by ``mail_owner``; the peer's credentials (``SO_PEERCRED``) must
      name ``mail_owner``'s uid, else the connection is refused.
    * Never uid 0 and never gid 0.  ``local``: the uid must be an account
      of the passwd database, the gid its primary group or one of its
      groups, the supplementary groups among its groups. ``pipe``: the
      same, except that the gid may be any group but 0 (pipe(8)'s
      ``user=name:group``). ``virtual``: uid at least
      ``virtual_minimum_uid``, only its own gid as group.
    * Paths (working directory, home, Maildir) must be absolute and
      normalised (no ``.``, ``..``, NUL); they are only used after the
      switch, so the kernel applies the user's rights to them; a session's
      Maildir must not be a symbolic link and must belong to the user.
    * ``spool``: the user name must be a passwd account whose uid and gid
      are exactly those of the request (never 0), with neither ``/`` nor a
      leading ``.``; the mailbox is opened without following a symbolic
      link and must be a regular file with one link
      (:func:`mailhorn.delivery.mbox.append`).
    * A session process gets a configuration without TLS (``ssl = no``) and
      without password tables, so no key and no database password is ever
      loaded into a process the mail user owns.

Parameters read
    ``mail_owner`` (by the master), ``virtual_minimum_uid``,
    ``process_id_directory``, ``queue_directory``; for ``spool``,
    ``mail_spool_directory``, ``mailbox_delivery_lock``,
    ``deliver_lock_attempts``, ``deliver_lock_delay``, ``stale_lock_time``,
    ``mailbox_size_limit``, ``strict_mailbox_ownership``.

Errors
    Requests are answered ``{"error": ...}``; the spawner itself only
    stops on SIGTERM (or with the master: it asks Linux to kill it then).
"""

from __future__ import annotations

import base64
import gc
import importlib
import json
import os
import pwd
import secrets
import select
import selectors
import signal
import socket
import stat
import struct
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, NoReturn

from mailhorn import log
from mailhorn.config.errors import ConfigError
from mailhorn.config.load import Config, load, main_cf_path
from mailhorn.master import control
from mailhorn.privsep import MAX_MESSAGE, Target
from mailhorn.master.listeners import bind_private_unix
from mailhorn.tables.registry import TABLE_TYPES, table_modules

#: The directory and the socket name under ``process_id_directory``.
SPAWNER_DIRECTORY = "privsep"
SPAWNER_SOCKET = "spawner"
#: Seconds a connection has to send its request.
REQUEST_TIMEOUT = 10.0

#: Post-login session entry points: ``module:function(config, sock, state) -> coroutine``.
SESSIONS: dict[str, str] = {
    "imap": "mailhorn.imap.server:run_mail_process",
    "pop3": "mailhorn.pop3.server:run_mail_process",
}

#: Settings forced on a session process: no TLS keys, no password tables in a user's process.
SESSION_OVERRIDES = {"ssl": "no", "imap_tls_wrappermode": "no", "pop3_tls_wrappermode": "no",
                     "passdb_maps": "unix:shadow.byname"}


def spawner_directory(config: Config) -> str:
    return os.path.join(control.pid_directory(config), SPAWNER_DIRECTORY)


def spawner_path(config: Config) -> str:
    """Where the spawner listens."""
    return os.path.join(spawner_directory(config), SPAWNER_SOCKET)


@dataclass(frozen=True)
class Policy:
    """What the spawner checks requests against."""

    owner_uid: int
    virtual_minimum_uid: int
    config_dir: str

    @classmethod
    def from_config(cls, config: Config, owner_uid: int) -> Policy:
        return cls(owner_uid, config.int("virtual_minimum_uid"), config.config_dir)


def open_socket(config: Config, owner_uid: int, owner_gid: int) -> socket.socket:
    """Create the directory and bind the listening socket (as root, before any fork)."""
    directory = spawner_directory(config)
    try:
        os.mkdir(directory, 0o710)
    except FileExistsError:
        pass
    st = os.lstat(directory)
    if not stat.S_ISDIR(st.st_mode):
        raise OSError(f"{directory}: not a directory")
    os.chown(directory, 0, owner_gid)
    os.chmod(directory, 0o710)
    path = os.path.join(directory, SPAWNER_SOCKET)
    sock = bind_private_unix(path, socket.SOCK_SEQPACKET)
    os.chown(path, owner_uid, owner_gid)
    os.chmod(path, 0o600)
    sock.listen(64)
    return sock


# -- the checks --------------------------------------------------------------------------

class Refusal(Exception):
    """A request breaks a rule; the text goes back to the worker and into the log."""


def _clean_path(path: str, what: str) -> str:
    if not path.startswith("/") or "\0" in path or any(part in (".", "..") for part in path.split("/")):
        raise Refusal(f"{what}: not an absolute, normalised path: {path!r}")
    return path


def _account_groups(entry: pwd.struct_passwd) -> set[int]:
    try:
        return set(os.getgrouplist(entry.pw_name, entry.pw_gid))
    except OSError:
        return {entry.pw_gid}


def check_target(target: Target, policy: Policy) -> None:
    """Raise :class:`Refusal` unless the spawner may run as ``target`` (see the module text)."""
    if target.uid <= 0 or target.gid <= 0 or 0 in target.groups:
        raise Refusal(f"refusing to run as uid {target.uid} gid {target.gid}: privileged")
    _clean_path(target.home, "home")
    if target.kind == "virtual":
        if target.uid < policy.virtual_minimum_uid:
            raise Refusal(f"virtual uid {target.uid} is below virtual_minimum_uid {policy.virtual_minimum_uid}")
        if set(target.groups) - {target.gid}:
            raise Refusal("virtual deliveries have no supplementary groups")
        return
    if target.kind not in ("local", "pipe"):
        raise Refusal(f"unknown identity kind: {target.kind}")
    try:
        entry = pwd.getpwuid(target.uid)
    except KeyError:
        raise Refusal(f"uid {target.uid} is not in the passwd database") from None
    allowed = _account_groups(entry)
    if target.kind == "local" and target.gid not in allowed:
        raise Refusal(f"gid {target.gid} is not a group of {entry.pw_name}")
    if set(target.groups) - allowed - {target.gid}:
        raise Refusal(f"supplementary groups not those of {entry.pw_name}")


def become(target: Target) -> None:
    """Give up root for ``target``, irrevocably (groups, gid, uid, in that order)."""
    os.setgroups(sorted(set(target.groups) | {target.gid}))
    os.setgid(target.gid)
    os.setuid(target.uid)
    if os.getuid() != target.uid or os.geteuid() != target.uid or os.getegid() != target.gid:
        raise OSError("the privilege switch did not take")
    try:
        os.setuid(0)
    except PermissionError:
        pass
    else:
        raise OSError("root privileges could be regained")
    os.umask(0o077)
    os.chdir("/")


# -- answering -------------------------------------------------------------------------------

def _send(conn: socket.socket, message: dict[str, Any]) -> None:
    try:
        conn.send(json.dumps(message).encode())
    except OSError:
        pass


def _fail(conn: socket.socket, kind: str, text: str, **extra: Any) -> NoReturn:
    if kind == "refused":
        log.warning(f"refused request: {text}")
    _send(conn, {"error": {"kind": kind, "message": text, **extra}})
    os._exit(1)


# -- the requests (each runs in the child forked for its connection) -----------------------

_STAND_IN = ""


def _verify(conn: socket.socket, request: dict[str, Any], fds: list[int], policy: Policy) -> None:
    from mailhorn.auth import passwords
    from mailhorn.auth.shadow import ShadowError, shadow_password

    name, encoded = request.get("user"), request.get("password")
    if not isinstance(name, str) or not isinstance(encoded, str):
        raise Refusal("verify: user and password are required")
    try:
        password = base64.b64decode(encoded, validate=True)
    except ValueError:
        raise Refusal("verify: bad password encoding") from None
    try:
        stored = shadow_password(name)
    except ShadowError as exc:
        log.warning(f"unix:shadow.byname: {exc}")
        _send(conn, {"ok": {"result": "tempfail"}})
        return
    try:
        matched = passwords.verify(password, stored or _STAND_IN, "CRYPT", user=name)
    except passwords.PasswordError:
        matched = False
    result = "unknown" if stored is None else ("yes" if matched is True else "no")
    _send(conn, {"ok": {"result": result}})


def _one_fd(fds: list[int], count: int, what: str) -> list[int]:
    if len(fds) != count:
        raise Refusal(f"{what}: expected {count} descriptors, got {len(fds)}")
    return fds


def _helper(conn: socket.socket, request: dict[str, Any], fds: list[int], policy: Policy) -> None:
    from mailhorn.delivery import privs

    (fd,) = _one_fd(fds, 1, "helper")
    target = Target.from_json(request.get("identity"))
    check_target(target, policy)
    become(target)
    _send(conn, {"ok": {"pid": os.getpid()}})
    conn.close()
    with socket.socket(fileno=fd) as control:
        privs.serve_mux(control)


def _local_overrides(policy: Policy, service: object) -> dict[str, str]:
    """The ``-o`` settings of the local(8) service ``service`` in master.cf (none for another name)."""
    from mailhorn.config.mastercf import master_cf_path, read_master_cf

    if not isinstance(service, str):
        raise Refusal("spool: bad service")
    try:
        entry = read_master_cf(master_cf_path(policy.config_dir)).find(service, "unix")
    except (ConfigError, OSError) as exc:
        raise Refusal(f"spool: cannot read master.cf: {exc}") from None
    return dict(entry.overrides) if entry is not None and entry.command == "local" else {}


def spool_parameters(request: dict[str, Any], config: Config, policy: Policy) -> dict[str, Any]:
    """The ``mbox`` operation for a ``spool`` request, from ``config`` alone.

    Raises :class:`Refusal` for a name that could leave the spool (``/``, a
    leading ``.``), for an account that is not in the passwd database with
    exactly the request's uid and gid (for root's own mailbox: those of
    ``default_privs``, as Postfix's local(8) delivers it), for uid 0, and
    for a Maildir spool (a trailing ``/``: the worker delivers that as the user).
    """
    name, uid, gid = request.get("user"), request.get("uid"), request.get("gid")
    if not isinstance(name, str) or type(uid) is not int or type(gid) is not int:
        raise Refusal("spool: user, uid and gid are required")
    if not name or "/" in name or name.startswith(".") or "\0" in name:
        raise Refusal(f"spool: not a mailbox name: {name!r}")
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        raise Refusal(f"spool: {name} is not in the passwd database") from None
    owner = entry
    if entry.pw_uid == 0:
        # root's own mailbox belongs to default_privs, as Postfix's local(8)
        # delivers it (postconf(5) default_privs: "delivery ... on behalf of root").
        try:
            owner = pwd.getpwnam(config.get("default_privs"))
        except KeyError:
            raise Refusal("spool: default_privs is not in the passwd database") from None
    if (owner.pw_uid, owner.pw_gid) != (uid, gid):
        raise Refusal(f"spool: {name}'s mailbox is not for uid {uid} gid {gid}")
    check_target(Target("local", owner.pw_name, uid, gid, (gid,), "/"), policy)
    spool = config.get("mail_spool_directory")
    if not spool or spool.endswith("/"):
        raise Refusal(f"spool: mail_spool_directory {spool!r} is not an mbox spool")
    _clean_path(spool, "mail_spool_directory")
    params: dict[str, Any] = {
        "path": os.path.join(spool, name), "size_limit": config.int("mailbox_size_limit"),
        "locks": [kind.lower() for kind in config.list("mailbox_delivery_lock")],
        "attempts": config.int("deliver_lock_attempts"), "delay": float(config.time("deliver_lock_delay")),
        "stale": float(config.time("stale_lock_time")), "owner": [uid, gid]}
    if config.bool("strict_mailbox_ownership"):
        params["require_owner"] = uid
    return params


def _spool(conn: socket.socket, request: dict[str, Any], fds: list[int], policy: Policy) -> None:
    from mailhorn.delivery import privs

    (fd,) = _one_fd(fds, 1, "spool")
    channel = socket.socket(fileno=fd)
    try:
        config = _session_config(policy, _local_overrides(policy, request.get("service")))
    except ConfigError as exc:
        raise Refusal(f"spool: {exc}") from None
    params = spool_parameters(request, config, policy)
    os.umask(0o077)
    os.chdir("/")
    _send(conn, {"ok": {"path": params["path"]}})
    conn.close()
    with channel:
        privs.serve_one(channel, "mbox", params)


def _reset_signals() -> None:
    for signum in (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGINT, signal.SIGHUP, signal.SIGTERM,
                   signal.SIGCHLD):
        signal.signal(signum, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_SETMASK, set())


def _command(conn: socket.socket, request: dict[str, Any], fds: list[int], policy: Policy) -> None:
    stdin_fd, stdout_fd = _one_fd(fds, 2, "command")
    target = Target.from_json(request.get("identity"))
    argv, env, cwd = request.get("argv"), request.get("env"), request.get("cwd", "/")
    if not (isinstance(argv, list) and argv and all(isinstance(a, str) and "\0" not in a for a in argv)):
        raise Refusal("command: bad argv")
    if not (isinstance(env, dict) and all(isinstance(k, str) and isinstance(v, str) and "\0" not in k + v
                                          and "=" not in k for k, v in env.items())):
        raise Refusal("command: bad environment")
    umask = request.get("umask", 0o077)
    if not isinstance(cwd, str):
        raise Refusal("command: bad directory")
    if type(umask) is not int or not 0 <= umask <= 0o777:
        raise Refusal("command: bad umask")
    _clean_path(cwd, "directory")
    check_target(target, policy)
    become(target)
    err_r, err_w = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:
        try:
            os.close(err_r)
            os.setsid()
            os.dup2(stdin_fd, 0)
            os.dup2(stdout_fd, 1)
            os.dup2(stdout_fd, 2)
            try:
                os.chdir(cwd)
            except OSError:
                os.chdir("/")
            _reset_signals()
            os.umask(umask)
            os.closerange(3, err_w)
            os.closerange(err_w + 1, 65536)
            os.execvpe(argv[0], argv, env)
        except OSError as exc:
            os.write(err_w, struct.pack("i", exc.errno or 0))
        os._exit(127)
    os.close(err_w)
    os.close(stdin_fd)
    os.close(stdout_fd)
    failure = os.read(err_r, 4)
    os.close(err_r)
    if failure:
        os.waitpid(pid, 0)
        _fail(conn, "failed", "exec failed", errno=struct.unpack("i", failure)[0])
    _send(conn, {"ok": {"pid": pid}})
    _monitor(conn, pid)


def _monitor(conn: socket.socket, pid: int) -> None:
    """Pass ``kill`` requests to the command's process group; report its end."""
    pidfd = os.pidfd_open(pid)
    while True:
        ready, _, _ = select.select([conn.fileno(), pidfd], [], [])
        if pidfd in ready:
            _, status = os.waitpid(pid, 0)
            if os.WIFSIGNALED(status):
                _send(conn, {"exit": {"signal": os.WTERMSIG(status)}})
            else:
                _send(conn, {"exit": {"code": os.WEXITSTATUS(status)}})
            return
        try:
            packet = conn.recv(MAX_MESSAGE)
        except OSError:
            packet = b""
        signum = int(signal.SIGKILL)
        if packet:
            try:
                signum = int(json.loads(packet).get("kill", signal.SIGKILL))
            except (ValueError, AttributeError, TypeError):
                continue
        try:
            os.killpg(pid, signum)
        except (ProcessLookupError, PermissionError):
            pass
        if not packet:  # the worker went away: the command goes too
            os.waitpid(pid, 0)
            return


def _session(conn: socket.socket, request: dict[str, Any], fds: list[int], policy: Policy) -> None:
    import asyncio

    sock_fd, log_fd = _one_fd(fds, 2, "session")
    protocol, overrides, state = request.get("protocol"), request.get("overrides"), request.get("state")
    if not isinstance(protocol, str) or protocol not in SESSIONS:
        raise Refusal(f"session: unknown protocol {protocol!r}")
    if not (isinstance(overrides, dict) and all(isinstance(k, str) and isinstance(v, str)
                                                for k, v in overrides.items())):
        raise Refusal("session: bad overrides")
    if not isinstance(state, dict) or not isinstance(state.get("maildir"), str):
        raise Refusal("session: bad state")
    target = Target.from_json(request.get("identity"))
    check_target(target, policy)
    maildir = _clean_path(str(state["maildir"]).rstrip("/") or "/", "maildir")
    config = _session_config(policy, {**overrides, **SESSION_OVERRIDES})
    module, _, function = SESSIONS[protocol].partition(":")
    entry: Callable[..., Any] = getattr(importlib.import_module(module), function)
    become(target)
    try:
        st = os.lstat(maildir)
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise Refusal(f"session: {maildir}: {exc.strerror}") from None
    else:
        if stat.S_ISLNK(st.st_mode) or st.st_uid != target.uid:
            raise Refusal(f"session: {maildir} is a link or belongs to another user")
    os.dup2(log_fd, 2)
    os.close(log_fd)
    sys.stderr = os.fdopen(2, "w", buffering=1, encoding="utf-8", errors="backslashreplace", closefd=False)
    log.setup(f"{protocol}-login", syslog_name=config.get("syslog_name"), maillog_file=None, stderr=True,
              syslog_path=None)
    _send(conn, {"ok": {"pid": os.getpid()}})
    conn.close()
    sock = socket.socket(fileno=sock_fd)
    asyncio.run(entry(config, sock, state))


#: The requests, by ``op``.
REQUESTS: dict[str, Callable[[socket.socket, dict[str, Any], list[int], Policy], None]] = {
    "verify": _verify,
    "helper": _helper,
    "spool": _spool,
    "command": _command,
    "session": _session,
}


def _serve_connection(conn: socket.socket, policy: Policy) -> NoReturn:
    """The child forked for one connection."""
    fds: list[int] = []
    try:
        conn.settimeout(REQUEST_TIMEOUT)
        data, fds, _flags, _addr = socket.recv_fds(conn, MAX_MESSAGE, 8)
        conn.settimeout(None)
        request = json.loads(data) if data else None
        if not isinstance(request, dict):
            raise Refusal("malformed request")
        handler = REQUESTS.get(str(request.get("op")))
        if handler is None:
            raise Refusal(f"unknown request {request.get('op')!r}")
        handler(conn, request, fds, policy)
    except Refusal as exc:
        _fail(conn, "refused", str(exc))
    except (ValueError, OSError) as exc:
        log.warning(f"request failed: {exc}")
        _fail(conn, "failed", str(exc))
    except BaseException as exc:  # the child must never return into the spawner's loop
        log.error(f"request failed: {exc.__class__.__name__}: {exc}")
        os._exit(1)
    os._exit(0)


# -- the loop ------------------------------------------------------------------------------------

def peer_uid(conn: socket.socket) -> int:
    """The uid of the process at the other end (SO_PEERCRED)."""
    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return int(struct.unpack("3i", creds)[1])


#: Modules a session process imports as it runs, loaded once in the spawner so that
#: every forked child shares them instead of importing (and owning) its own copy.
#: Per protocol, those of its sessions; the rest serve every request.
SESSION_PRELOAD: dict[str, tuple[str, ...]] = {
    "imap": ("mailhorn.imap.handlers", "mailhorn.imap.fetch", "mailhorn.imap.listing",
             "mailhorn.imap.search", "mailhorn.imap.message"),
    "pop3": ("mailhorn.pop3.maildrop", "mailhorn.pop3.session"),
}
COMMON_PRELOAD = (
    "concurrent.futures.thread",
    "mailhorn.auth.passdb",
    "mailhorn.auth.userdb",
    "mailhorn.auth.shadow",
    "mailhorn.delivery.privs",
)

#: main.cf as the spawner last read it: (main.cf's inode, size, mtime) and the configuration.
_base_config: tuple[tuple[int, int, int], Config] | None = None


def _main_cf_stamp(policy: Policy) -> tuple[int, int, int] | None:
    try:
        st = os.stat(main_cf_path(policy.config_dir))
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


def _preload_config(policy: Policy) -> None:
    """Read main.cf before forking (again only when it changed), for the session processes."""
    global _base_config
    stamp = _main_cf_stamp(policy)
    if stamp is None or (_base_config is not None and _base_config[0] == stamp):
        return
    try:
        _base_config = (stamp, load(policy.config_dir))
    except Exception as exc:  # the child reads it itself and reports the error
        log.warning(f"cannot read the configuration: {exc}")
        _base_config = None


def _session_config(policy: Policy, overrides: dict[str, str]) -> Config:
    """The session's configuration: the one read before the fork when main.cf is unchanged."""
    if _base_config is not None and _base_config[0] == _main_cf_stamp(policy):
        return _base_config[1].with_overrides(overrides)
    return load(policy.config_dir, overrides)


def preload_modules(sessions: Iterable[str], texts: Iterable[str]) -> list[str]:
    """What the spawner loads before forking: the session code of the ``sessions``
    protocols, what every request needs, and the table modules ``texts`` call for."""
    wanted = [protocol for protocol in SESSIONS if protocol in set(sessions)]
    return [*(SESSIONS[p].partition(":")[0] for p in wanted),
            *(module for p in wanted for module in SESSION_PRELOAD[p]),
            *COMMON_PRELOAD, *table_modules(texts)]


def serve(sock: socket.socket, policy: Policy, sessions: Iterable[str] = tuple(SESSIONS)) -> int:
    """Accept requests until SIGTERM; each connection is served by a forked child.

    Before forking, the modules of the ``sessions`` protocols that run
    (``imap``, ``pop3``: those with an imapd or pop3d service) are imported,
    main.cf is read and the objects are frozen out of the collector
    (``gc.freeze()``), so the children share those pages with the spawner
    instead of copying them. A session of another protocol still works: its
    child imports what it needs (the spawner is root and can read it).
    """
    from mailhorn.auth import passwords

    global _STAND_IN
    _STAND_IN = passwords.hash_password(secrets.token_hex(16), "CRYPT")
    _preload_config(policy)
    # Table modules as the workers get them: SQL clients only when main.cf
    # names them (the spawner, root, can still load one later).
    texts = _base_config[1].values() if _base_config is not None else [f"{t}:" for t in TABLE_TYPES]
    for name in preload_modules(sessions, texts):
        try:
            importlib.import_module(name)
        except ImportError as exc:
            log.warning(f"cannot load {name}: {exc}")
    gc.collect()
    stop_r, stop_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    signal.set_wakeup_fd(stop_w)
    stopping = False

    def note(signum: int, frame: object) -> None:
        nonlocal stopping
        if signum == signal.SIGTERM:
            stopping = True

    signal.signal(signal.SIGTERM, note)
    signal.signal(signal.SIGCHLD, note)
    sock.setblocking(False)
    selector = selectors.DefaultSelector()
    selector.register(sock, selectors.EVENT_READ)
    selector.register(stop_r, selectors.EVENT_READ)
    while not stopping:
        for key, _mask in selector.select(5.0):
            if key.fd == stop_r:
                try:
                    os.read(stop_r, 512)
                except BlockingIOError:
                    pass
                continue
            try:
                conn, _ = sock.accept()
            except (BlockingIOError, InterruptedError):
                continue
            with conn:
                if peer_uid(conn) != policy.owner_uid:
                    log.warning(f"refused a connection from uid {peer_uid(conn)}: not mail_owner")
                    _refuse_stranger(conn)
                    continue
                _preload_config(policy)
                gc.freeze()
                pid = os.fork()
                if pid == 0:
                    selector.close()
                    sock.close()
                    signal.set_wakeup_fd(-1)
                    for fd in (stop_r, stop_w):
                        os.close(fd)
                    _reset_signals()
                    conn.setblocking(True)
                    _serve_connection(conn, policy)
        _reap()
    selector.close()
    sock.close()
    return 0


def _refuse_stranger(conn: socket.socket) -> None:
    """Answer a peer that is not ``mail_owner``; its request is dropped unread."""
    conn.setblocking(False)
    try:
        conn.recv(MAX_MESSAGE)  # closing on unread data would reset the connection before the answer
    except OSError:
        pass
    _send(conn, {"error": {"kind": "refused", "message": "not mail_owner"}})


def _reap() -> None:
    while True:
        try:
            pid, _status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def spawner_main(sock: socket.socket, config: Config, owner_uid: int, close_fds: list[int],
                 log_setup: Callable[[str], None], sessions: Iterable[str] = tuple(SESSIONS)) -> int:
    """The spawner process, forked by the master (still root); ``sessions``: the
    protocols whose mail processes it will start (see :func:`serve`)."""
    from mailhorn.master.privileges import die_with_parent

    signal.set_wakeup_fd(-1)
    for signum in (signal.SIGTERM, signal.SIGCHLD):
        signal.signal(signum, signal.SIG_DFL)
    for signum in (signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, signal.SIG_IGN)
    # Forked with the master's signals blocked; see supervisor.fork_blocking_signals.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD})
    for fd in close_fds:
        try:
            os.close(fd)
        except OSError:
            pass
    die_with_parent()
    if os.getppid() == 1:
        return 0
    log_setup("spawner")
    try:
        return serve(sock, Policy.from_config(config, owner_uid), sessions)
    except Exception as exc:  # the last word before the master restarts it
        log.error(f"spawner: {exc.__class__.__name__}: {exc}")
        return 1
