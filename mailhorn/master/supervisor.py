"""The master process: listeners, pid file, control socket, and the workers.

Start-up (:meth:`Master.start`): read main.cf and master.cf, lock the pid
file (a second master is refused), create the queue directories (owned by
``mail_owner`` when running as root, as Postfix lays them out), bind every
listener (a bind error is fatal: ``fatal: bind 127.0.0.1 port 25: Address
already in use``), open the control socket, write the pid file, and fork
``master_worker_count`` workers (default: one per CPU; see
:mod:`mailhorn.master.worker`). Then the master only supervises, in a plain
``selectors`` loop (no asyncio, so forking is safe):

* a worker that dies unexpectedly is logged as Postfix's master logs a dead
  child (``warning: process worker-0 pid N killed by signal 9``) and
  restarted: at once when it had run for a while, else after a backoff that
  doubles up to ``service_throttle_time``; its open connections are dropped
  from the anvil table;
* SIGHUP or ``reload`` on the control socket: re-read the configuration; a
  broken one is refused with the error logged and the running one kept.
  Otherwise listeners whose endpoint did not change are kept, new ones bound,
  old ones closed; the workers are replaced: new workers start at once with
  the new configuration, the old ones get SIGTERM (they stop accepting and
  finish their sessions);
* run as root, the master also forks the spawner
  (:mod:`mailhorn.master.spawner`), the root process that starts delivery
  helpers, commands and POP3/IMAP mail processes as mail users for the
  workers; it is restarted when it dies and replaced at each reload, and
  its socket is bound once by the master;
* SIGTERM, SIGINT or ``stop``: SIGTERM to the workers, which get
  ``master_drain_time`` (default 10s) to finish; those still there after
  five more seconds are killed. Then the master exits.

Parameters read: ``queue_directory``, ``process_id_directory``,
``mail_owner``, ``inet_interfaces``, ``inet_protocols``, ``known_tcp_ports``,
``master_service_disable``, ``service_throttle_time``,
``anvil_rate_time_unit``, and the mailhorn parameters ``master_worker_count``
and ``master_drain_time``.
"""

from __future__ import annotations

import errno
import gc
import os
import selectors
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass

from mailhorn import __version__, log
from mailhorn.anvil import Anvil
from mailhorn.config.errors import ConfigError
from mailhorn.config.load import Config, load
from mailhorn.master import control, spawner
from mailhorn.master.listeners import BindError, Endpoint, ListenerSet, bind_private_unix, endpoints
from mailhorn.master.privileges import Identity, service_identity
from mailhorn.master.worker import WorkerSpec, preload, worker_main
from mailhorn.queue.store import QUEUE_NAMES, QueueError, QueueStore
from mailhorn.services import Planned, ServicePlan, plan, read_services
from mailhorn.setup import sdnotify

#: A worker that ran this long before dying is restarted without delay.
STABLE_AFTER = 10.0
KILL_GRACE = 5.0


class StartError(Exception):
    """The master cannot start; the text is what follows ``fatal:``."""


def worker_count(config: Config) -> int:
    """``master_worker_count``: worker processes accepting connections (default: the CPU count)."""
    value = config.int("master_worker_count")
    if value < 1:
        raise ConfigError(f"bad numerical configuration: master_worker_count = {value}",
                          param="master_worker_count")
    return value


def drain_time(config: Config) -> float:
    """``master_drain_time``: how long stopping workers may finish sessions (default 10s)."""
    return float(config.time("master_drain_time"))


@dataclass
class Generation:
    """One reading of the configuration and what it needs."""

    config: Config
    plan: ServicePlan
    bindings: list[tuple[Planned, list[Endpoint]]]
    workers: int
    drain: float


@dataclass
class WorkerProc:
    index: int
    pid: int
    column: int
    started: float
    generation: int


def read_generation(config_dir: str) -> Generation:
    """Read main.cf and master.cf into a :class:`Generation` (ConfigError, BindError)."""
    config = load(config_dir)
    master_cf = read_services(config_dir)
    service_plan = plan(master_cf, config)
    bindings = [(p, endpoints(p.service, p.config)) for p in service_plan.network]
    return Generation(config, service_plan, bindings, worker_count(config), drain_time(config))


def logging_setup(config: Config, foreground: bool) -> Callable[[str], None]:
    """A function that sets up logging for a program name with this configuration."""
    syslog_name = config.get("syslog_name")
    facility = config.get("syslog_facility")
    maillog = config.get("maillog_file")

    def setup(program: str) -> None:
        log.setup(program, syslog_name=syslog_name, facility=facility, maillog_file=maillog, stderr=foreground)

    return setup


#: Signals the master handles; a child must never run the master's handlers.
CHILD_SIGNALS = frozenset({signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD})


def fork_blocking_signals() -> int:
    """fork() with the master's signals blocked around it.

    A signal that reaches a new child before it has set its own dispositions
    would otherwise run the master's handler in the child (which only notes
    it) and be lost: a stop right after start then waited for the kill
    timeout. The child unblocks them (:func:`unblock_child_signals`) once its
    dispositions are in place, so a pending SIGTERM is acted on.
    """
    old = signal.pthread_sigmask(signal.SIG_BLOCK, CHILD_SIGNALS)
    pid = os.fork()
    if pid != 0:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)
    return pid


class Master:
    """The supervisor (see the module docstring)."""

    def __init__(self, config_dir: str, foreground: bool = False) -> None:
        self.config_dir = config_dir
        self.foreground = foreground
        self.generation: Generation | None = None
        self.generation_number = 0
        self.listeners = ListenerSet.empty()
        self.identity: Identity | None = None
        self.pid_file: control.PidFile | None = None
        self.control_sock: socket.socket | None = None
        self.anvil: Anvil | None = None
        self.workers: dict[int, WorkerProc] = {}
        self.retiring: dict[int, WorkerProc] = {}
        self.restart_at: dict[int, float] = {}
        self.failures: dict[int, int] = {}
        self.free_columns: list[int] = []
        #: Control connections open now, closed in workers forked meanwhile.
        self.client_fds: list[int] = []
        self.spawner_sock: socket.socket | None = None
        self.spawner_pid: int | None = None
        self.spawner_restart_at: float | None = None
        self.stopping = False
        self.kill_at = 0.0
        self.exit_signal = 0
        self.selector = selectors.DefaultSelector()
        self.signal_r, self.signal_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.wakeup_r, self.wakeup_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)

    # -- start-up ---------------------------------------------------------------
    def start(self) -> None:
        """Everything up to the listening state; :class:`StartError` on failure."""
        try:
            gen = read_generation(self.config_dir)
        except (ConfigError, BindError) as exc:
            raise StartError(str(exc)) from None
        logging_setup(gen.config, self.foreground)("master")
        for text in gen.plan.warnings:
            log.warning(text)
        try:
            self.identity = service_identity(gen.config)
            self._prepare_directories(gen.config)
            if self.identity is not None:
                self.spawner_sock = spawner.open_socket(gen.config, self.identity.uid, self.identity.gid)
        except (ConfigError, QueueError, OSError) as exc:
            raise StartError(str(exc)) from None
        try:
            self.pid_file = control.PidFile.acquire(control.pid_path(gen.config))
        except control.AlreadyRunning:
            raise StartError("the mail system is already running") from None
        try:
            self.listeners = self.listeners.rebind(self._wanted(gen), self._owner())
        except BindError as exc:
            raise StartError(str(exc)) from None
        self._open_control(gen.config)
        self.pid_file.write(os.getpid())
        self.generation = gen
        self._new_anvil(gen)
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD):
            signal.signal(signum, self._note_signal)
        signal.set_wakeup_fd(self.signal_w)
        self.selector.register(self.signal_r, selectors.EVENT_READ, "signal")
        log.info(f"daemon started -- version {__version__}, configuration {self.config_dir}")

    @staticmethod
    def _note_signal(signum: int, frame: object) -> None:
        """Signals are handled in the loop through the wakeup fd."""

    def _owner(self) -> tuple[int, int] | None:
        return (self.identity.uid, self.identity.gid) if self.identity else None

    def _prepare_directories(self, config: Config) -> None:
        """The queue, pid, private and public directories, Postfix's owners and modes."""
        store = QueueStore.from_config(config)
        store.setup()
        root = store.root
        os.makedirs(control.pid_directory(config), mode=0o755, exist_ok=True)
        for name, mode in (("private", 0o700), ("public", 0o710)):
            path = os.path.join(root, name)
            try:
                os.mkdir(path, mode)
            except FileExistsError:
                pass
        if self.identity is not None:
            os.chmod(root, 0o755)
            for name in (*QUEUE_NAMES, "private", "public"):
                os.chown(os.path.join(root, name), self.identity.uid, self.identity.gid)
            self._share_maillog(config)

    def _share_maillog(self, config: Config) -> None:
        """Let the workers append to ``maillog_file`` after they give up root.

        The file gets ``mail_owner``'s group and group write permission
        (Postfix has its root-run postlogd write it instead).
        """
        assert self.identity is not None
        path = config.get("maillog_file")
        if not path:
            return
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
        try:
            st = os.fstat(fd)
            if st.st_gid != self.identity.gid:
                os.fchown(fd, -1, self.identity.gid)
            os.fchmod(fd, (st.st_mode & 0o7777) | 0o060)
        finally:
            os.close(fd)

    def _wanted(self, gen: Generation) -> list[Endpoint]:
        return [e for _planned, eps in gen.bindings for e in eps]

    def _open_control(self, config: Config) -> None:
        path = control.control_path(config)
        sock = bind_private_unix(path, socket.SOCK_STREAM)
        os.chmod(path, 0o600)
        sock.listen(8)
        sock.setblocking(False)
        self.control_sock = sock
        self.selector.register(sock, selectors.EVENT_READ, "control")

    def _new_anvil(self, gen: Generation) -> None:
        columns = max(gen.workers * 3, 4)
        if self.anvil is not None and self.anvil.workers >= columns:
            return
        self.anvil = Anvil.create(float(gen.config.time("anvil_rate_time_unit")), workers=columns)
        used = {w.column for w in (*self.workers.values(), *self.retiring.values())}
        self.free_columns = [c for c in range(columns) if c not in used]

    # -- workers ----------------------------------------------------------------
    def spawn_workers(self) -> None:
        """Start the spawner and the first generation of workers (after :meth:`start`)."""
        self._spawn_generation()

    def _spawn_generation(self) -> None:
        assert self.generation is not None
        self.generation_number += 1
        preload(self.generation.plan, self.generation.config)
        # Everything imported so far is shared with the children: keep the
        # collector's hands off it, so neither the master nor a child copies
        # those pages just by collecting garbage (copy-on-write).
        gc.collect()
        gc.freeze()
        self._spawn_spawner()
        for index in range(self.generation.workers):
            self._spawn(index)

    def _spawn(self, index: int) -> None:
        gen = self.generation
        assert gen is not None and self.anvil is not None
        column = self.free_columns.pop(0) if self.free_columns else index
        listeners = [(p, [self.listeners.sockets[e] for e in eps]) for p, eps in gen.bindings]
        worker_plan = gen.plan if index == 0 else ServicePlan(gen.plan.network, (), gen.plan.transports, ())
        spec = WorkerSpec(
            index=index, config=gen.config, plan=worker_plan, listeners=listeners,
            anvil=self.anvil.for_worker(column), wakeup_read=self.wakeup_r, wakeup_write=self.wakeup_w,
            identity=self.identity, pid_directory=control.pid_directory(gen.config), drain_time=gen.drain,
            log_setup=logging_setup(gen.config, self.foreground),
            close_fds=[self.signal_r, self.signal_w, self.selector.fileno(),
                       *([self.pid_file.fd] if self.pid_file else []),
                       *([self.control_sock.fileno()] if self.control_sock else []), *self.client_fds,
                       *([self.spawner_sock.fileno()] if self.spawner_sock else [])],
            spawner_path=spawner.spawner_path(gen.config) if self.spawner_sock else None,
        )
        pid = fork_blocking_signals()
        if pid == 0:
            status = 1
            try:
                status = worker_main(spec)
            finally:
                os._exit(status)
        self.workers[index] = WorkerProc(index, pid, column, time.monotonic(), self.generation_number)

    def _spawn_spawner(self) -> None:
        """Fork the spawner (root) on the socket the master bound; see :mod:`mailhorn.master.spawner`."""
        gen = self.generation
        if self.spawner_sock is None or self.identity is None or gen is None:
            return
        if self.spawner_pid is not None:
            self._kill(self.spawner_pid, signal.SIGTERM)
            self.spawner_pid = None
        close_fds = [self.signal_r, self.signal_w, self.selector.fileno(), self.wakeup_r, self.wakeup_w,
                     *([self.pid_file.fd] if self.pid_file else []),
                     *([self.control_sock.fileno()] if self.control_sock else []), *self.client_fds,
                     *(sock.fileno() for sock in self.listeners.sockets.values())]
        pid = fork_blocking_signals()
        if pid == 0:
            status = 1
            try:
                sessions = [protocol for protocol, command in (("imap", "imapd"), ("pop3", "pop3d"))
                            if any(p.service.command == command for p in gen.plan.network)]
                status = spawner.spawner_main(self.spawner_sock, gen.config, self.identity.uid, close_fds,
                                              logging_setup(gen.config, self.foreground), sessions)
            finally:
                os._exit(status)
        self.spawner_pid = pid
        self.spawner_restart_at = None

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            self._child_exited(pid, status)

    def _child_exited(self, pid: int, status: int) -> None:
        if pid == self.spawner_pid:
            self.spawner_pid = None
            if not self.stopping:
                log.warning(f"process spawner pid {pid} exit status {os.WEXITSTATUS(status)}"
                            if not os.WIFSIGNALED(status) else
                            f"process spawner pid {pid} killed by signal {os.WTERMSIG(status)}")
                self.spawner_restart_at = time.monotonic() + 1.0
            return
        retired = self.retiring.pop(pid, None)
        if retired is not None:
            self._release_column(retired.column)
            return
        for index, proc in list(self.workers.items()):
            if proc.pid != pid:
                continue
            del self.workers[index]
            self._release_column(proc.column)
            if self.stopping:
                return
            name = f"worker-{index}"
            if os.WIFSIGNALED(status):
                log.warning(f"process {name} pid {pid} killed by signal {os.WTERMSIG(status)}")
            else:
                log.warning(f"process {name} pid {pid} exit status {os.WEXITSTATUS(status)}")
            self._schedule_restart(index, time.monotonic() - proc.started)
            return

    def _release_column(self, column: int) -> None:
        if self.anvil is not None and column < self.anvil.workers:
            self.anvil.forget_worker(column)
            if column not in self.free_columns:
                self.free_columns.append(column)

    def _schedule_restart(self, index: int, lived: float) -> None:
        assert self.generation is not None
        if lived >= STABLE_AFTER:
            self.failures[index] = 0
            delay = 0.0
        else:
            self.failures[index] = self.failures.get(index, 0) + 1
            limit = float(self.generation.config.time("service_throttle_time"))
            delay = min(limit, 0.5 * 2 ** (self.failures[index] - 1))
            if self.failures[index] > 1:
                log.warning(f"worker-{index}: restarting in {delay:g} seconds after repeated failures")
        self.restart_at[index] = time.monotonic() + delay

    # -- control ------------------------------------------------------------------
    def reload(self) -> str | None:
        """Re-read the configuration; the error text when it was refused."""
        sdnotify.reloading()
        try:
            gen = read_generation(self.config_dir)
            identity = service_identity(gen.config)
            new_listeners = self.listeners.rebind(self._wanted(gen), self._owner())
        except (ConfigError, BindError) as exc:
            log.error(f"reload refused, the running configuration is kept: {exc}")
            sdnotify.ready()
            return str(exc)
        for text in gen.plan.warnings:
            log.warning(text)
        log.info(f"reload -- version {__version__}, configuration {self.config_dir}")
        self.identity = identity
        old_listeners = self.listeners
        self.listeners = new_listeners
        for proc in self.workers.values():
            self.retiring[proc.pid] = proc
            self._kill(proc.pid, signal.SIGTERM)
        self.workers.clear()
        self.restart_at.clear()
        self.failures.clear()
        self.generation = gen
        self._new_anvil(gen)
        # Closed before the fork, or the new workers would inherit them.
        old_listeners.close_except(new_listeners)
        self._spawn_generation()
        sdnotify.ready()
        return None

    def begin_stop(self, signum: int) -> None:
        if self.stopping:
            return
        assert self.generation is not None
        self.stopping = True
        self.exit_signal = signum
        sdnotify.stopping()
        log.info(f"terminating on signal {signum}")
        self.restart_at.clear()
        for proc in (*self.workers.values(), *self.retiring.values()):
            self._kill(proc.pid, signal.SIGTERM)
        if self.spawner_pid is not None:
            self._kill(self.spawner_pid, signal.SIGTERM)
        self.kill_at = time.monotonic() + self.generation.drain + KILL_GRACE

    def flush(self) -> None:
        """Pass a flush request to the queue manager's worker."""
        try:
            os.write(self.wakeup_w, b"f")
        except BlockingIOError:
            pass

    def status_lines(self) -> list[str]:
        lines = [f"worker {p.index} {p.pid}" for p in sorted(self.workers.values(), key=lambda p: p.index)]
        lines += [f"listener {e.describe()}" for e in self.listeners.sockets]
        return lines

    @staticmethod
    def _kill(pid: int, signum: int) -> None:
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass

    def _serve_control(self) -> None:
        assert self.control_sock is not None
        try:
            conn, _ = self.control_sock.accept()
        except BlockingIOError:
            return
        with conn:
            self.client_fds.append(conn.fileno())
            conn.setblocking(True)
            conn.settimeout(5.0)
            try:
                data = b""
                while b"\n" not in data and len(data) < 1024:
                    chunk = conn.recv(1024)
                    if not chunk:
                        break
                    data += chunk
                command = data.split(b"\n", 1)[0].decode("ascii", "replace").strip()
                reply = self._control_command(command)
                conn.sendall("".join(line + "\n" for line in reply).encode())
            except OSError:
                return
            finally:
                self.client_fds.clear()

    def _control_command(self, command: str) -> list[str]:
        if command == "status":
            return [*self.status_lines(), "ok"]
        if command == "reload":
            if self.stopping:
                return ["error the mail system is stopping"]
            error = self.reload()
            return ["ok"] if error is None else [f"error {error}"]
        if command == "stop":
            self.begin_stop(signal.SIGTERM)
            return ["ok"]
        if command == "flush":
            self.flush()
            return ["ok"]
        return [f"error unknown command: {command}"]

    # -- the loop -------------------------------------------------------------------
    def loop(self) -> int:
        """Supervise until stopped; the exit status."""
        while True:
            if self.stopping and not self.workers and not self.retiring and self.spawner_pid is None:
                break
            timeout = self._next_timeout()
            for key, _mask in self.selector.select(timeout):
                if key.data == "signal":
                    self._handle_signals()
                elif key.data == "control":
                    self._serve_control()
            self._reap()
            now = time.monotonic()
            if self.stopping:
                if now >= self.kill_at:
                    for proc in (*self.workers.values(), *self.retiring.values()):
                        self._kill(proc.pid, signal.SIGKILL)
                    if self.spawner_pid is not None:
                        self._kill(self.spawner_pid, signal.SIGKILL)
                    self.kill_at = now + 1.0
                continue
            if self.spawner_restart_at is not None and now >= self.spawner_restart_at:
                self._spawn_spawner()
            for index, when in list(self.restart_at.items()):
                if now >= when:
                    del self.restart_at[index]
                    if index not in self.workers:
                        self._spawn(index)
        self.shutdown()
        return 0

    def _next_timeout(self) -> float:
        now = time.monotonic()
        deadlines = list(self.restart_at.values())
        if self.spawner_restart_at is not None:
            deadlines.append(self.spawner_restart_at)
        if self.stopping:
            deadlines.append(self.kill_at)
        if not deadlines:
            return 5.0
        return max(0.0, min(deadlines) - now)

    def _handle_signals(self) -> None:
        try:
            data = os.read(self.signal_r, 512)
        except BlockingIOError:
            return
        for signum in data:
            if signum in (signal.SIGTERM, signal.SIGINT):
                self.begin_stop(signum)
            elif signum == signal.SIGHUP and not self.stopping:
                self.reload()

    def shutdown(self) -> None:
        """Close everything the master holds (the pid file stays, unlocked)."""
        self.listeners.close_except(ListenerSet.empty())
        if self.spawner_sock is not None:
            path = self.spawner_sock.getsockname()
            self.spawner_sock.close()
            self.spawner_sock = None
            try:
                os.unlink(path)
            except OSError:
                pass
        if self.control_sock is not None:
            path = self.control_sock.getsockname()
            self.control_sock.close()
            self.control_sock = None
            try:
                os.unlink(path)
            except OSError:
                pass
        if self.pid_file is not None:
            self.pid_file.close()
        signal.set_wakeup_fd(-1)


def run_master(config_dir: str, foreground: bool, ready: Callable[[str | None], None]) -> int:
    """Start and supervise; ``ready(None)`` once listening, ``ready(error)`` on failure."""
    master = Master(config_dir, foreground)
    try:
        master.start()
    except StartError as exc:
        ready(str(exc))
        return 1
    except OSError as exc:
        ready(f"{exc.filename or 'master'}: {os.strerror(exc.errno or errno.EIO)}")
        return 1
    # Before the first fork, so that no worker inherits the caller's ready channel.
    ready(None)
    master.spawn_workers()
    return master.loop()
