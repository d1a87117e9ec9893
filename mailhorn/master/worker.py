"""One worker process: the services of master.cf in one asyncio event loop.

The master forks workers after binding every listener; each worker inherits
the listening sockets, so the kernel spreads new connections over all of
them. Worker 0 also runs the singleton services (pickup, the queue manager)
and prepares the queue (``setup()`` and ``recover()``); it takes an exclusive
lock on ``pid/singleton.lock`` first, so that during a reload the new worker 0
starts its singletons only once the old one has let go of them.

Start-up order: reset the master's signal handling, open the singleton lock
(worker 0), give up root for ``mail_owner`` (see
:mod:`mailhorn.master.privileges`) and from then on ask the spawner for what
needs another identity (:mod:`mailhorn.privsep`), ask to die with the master, set up
logging, then run the loop (``uvloop`` when it is importable).

SIGTERM: the singletons are cancelled at once; the network services are
cancelled (their ``serve`` stops accepting and lets its sessions end), the
worker closes its copies of the listening sockets, and the services get
``master_drain_time`` (default 10s) to finish; then the worker exits.
SIGINT and SIGHUP are ignored: the master decides.

A service whose module cannot be imported is logged as an error and left
out; a service that fails ends the worker with status 1, and the master
restarts it.
"""

from __future__ import annotations

import asyncio
import fcntl
import importlib
import os
import signal
import socket
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from mailhorn import log, privsep
from mailhorn.anvil import Anvil
from mailhorn.config.load import Config
from mailhorn.iopool import offload
from mailhorn.master.privileges import Identity, die_with_parent, drop_privileges
from mailhorn.runtime import Runtime
from mailhorn.runtime_build import QmgrWakeup, build_runtime, prepare_queue
from mailhorn.services import Planned, ServicePlan, load_network, load_singleton
from mailhorn.queue.agents import AGENTS
from mailhorn.tables.registry import table_modules

SINGLETON_LOCK = "singleton.lock"


@dataclass
class WorkerSpec:
    """Everything a worker needs, prepared by the master before the fork."""

    index: int
    config: Config
    plan: ServicePlan
    listeners: list[tuple[Planned, list[socket.socket]]]
    anvil: Anvil
    wakeup_read: int
    wakeup_write: int
    identity: Identity | None
    pid_directory: str
    drain_time: float
    log_setup: Callable[[str], None]
    close_fds: list[int] = field(default_factory=list)
    #: The spawner's socket when the master runs as root (see :mod:`mailhorn.privsep`).
    spawner_path: str | None = None


#: Modules services import late, loaded before the fork: once a worker has
#: given up root it may not be able to read the Python installation.
PRELOAD = (
    "concurrent.futures.thread",
    "uvloop",
    "mailhorn.cleanup.cleanup",
    "mailhorn.smtpd.checks",
    "mailhorn.dns",
    "mailhorn.queue.manager",
    "mailhorn.bounce.notify",
    *sorted({entry.target.partition(":")[0] for entry in AGENTS.values()}),
)


def preload(plan: ServicePlan, config: Config) -> None:
    """Import the service modules (and what they import late) in the master.

    Table modules: every light one, and the SQL ones the configuration
    names (:func:`~mailhorn.tables.registry.table_modules`), so that a
    system without SQL tables does not carry their client libraries.
    A module that cannot be imported is left for the worker to report.
    """
    texts = [*config.values()]
    for planned in (*plan.network, *plan.singletons):
        texts.extend(planned.config.overrides.values())
    for transport in plan.transports:
        texts.extend(transport.config.overrides.values())
    for module in (*PRELOAD, *table_modules(texts),
                   *(p.entry.target.partition(":")[0] for p in (*plan.network, *plan.singletons))):
        try:
            importlib.import_module(module)
        except ImportError:
            continue


def worker_main(spec: WorkerSpec) -> int:
    """Run in the forked child; returns the exit status."""
    signal.set_wakeup_fd(-1)
    for signum in (signal.SIGTERM, signal.SIGCHLD):
        signal.signal(signum, signal.SIG_DFL)
    for signum in (signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, signal.SIG_IGN)
    # The master forked with these blocked (fork_blocking_signals); a SIGTERM
    # that came meanwhile now ends this worker before it serves anything.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD})
    for fd in spec.close_fds:
        try:
            os.close(fd)
        except OSError:
            pass
    lock_fd = -1
    if spec.index == 0:
        lock_fd = os.open(os.path.join(spec.pid_directory, SINGLETON_LOCK),
                          os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    if spec.identity is not None:
        drop_privileges(spec.identity)
    if spec.spawner_path is not None:
        privsep.enable(spec.spawner_path)
    die_with_parent()
    if os.getppid() == 1:
        return 0
    spec.log_setup(_program(spec.plan))
    try:
        return _run_loop(_serve(spec, lock_fd))
    except Exception as exc:  # the worker's last word before the master restarts it
        log.error(f"worker {spec.index}: {exc.__class__.__name__}: {exc}")
        return 1


def _program(plan: ServicePlan) -> str:
    """The default program name of a worker's log lines (services may log under their own)."""
    if plan.network:
        return plan.network[0].service.command
    if plan.singletons:
        return plan.singletons[0].service.command
    return "master"


def _run_loop(main: Coroutine[Any, Any, int]) -> int:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)


async def _serve(spec: WorkerSpec, lock_fd: int) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    wakeup = QmgrWakeup(spec.wakeup_write)
    if spec.index == 0:
        wakeup.bind(loop)
        os.set_blocking(spec.wakeup_read, False)

        def drain_pipe() -> None:
            try:
                wakeup.feed(os.read(spec.wakeup_read, 4096))
            except BlockingIOError:
                pass

        loop.add_reader(spec.wakeup_read, drain_pipe)
    runtime = build_runtime(spec.config, anvil=spec.anvil, wakeup=wakeup)
    network: list[asyncio.Task[None]] = []
    for planned, sockets in spec.listeners:
        try:
            serve = load_network(planned.entry)
        except ImportError as exc:
            log.error(f"service {planned.service.key}: cannot load {planned.entry.target}: {exc}")
            continue
        for sock in sockets:
            coro = serve(sock, planned.config, runtime, planned.service)
            network.append(asyncio.create_task(_as_program(planned.service.command, coro)))
    singletons: list[asyncio.Task[None]] = []
    if spec.index == 0:
        singletons.append(asyncio.create_task(_run_singletons(spec, runtime, lock_fd)))
    stopper = asyncio.create_task(stop.wait())
    status = 0
    pending = {stopper, *network, *singletons}
    while not stop.is_set():
        done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
        failed = [t for t in done if t is not stopper and (t.cancelled() or t.exception() is not None)]
        for task in failed:
            error = None if task.cancelled() else task.exception()
            log.error(f"service ended: {error.__class__.__name__}: {error}" if error else "service cancelled")
        if failed:
            status = 1
            break
        if not pending - {stopper}:
            # Nothing left to run (every service finished): wait for the master's SIGTERM.
            await stop.wait()
    for task in singletons:
        task.cancel()
    for task in network:
        task.cancel()
    # Once the services have stopped accepting, let go of the listening
    # sockets, so that a port given up by a reload is free while the old
    # sessions finish.
    await asyncio.sleep(0)
    for _planned, sockets in spec.listeners:
        for sock in sockets:
            sock.close()
    remaining = [t for t in (*network, *singletons) if not t.done()]
    if remaining:
        await asyncio.wait(remaining, timeout=spec.drain_time)
    stopper.cancel()
    return status


async def _as_program(program: str, coro: Coroutine[Any, Any, None]) -> None:
    """Run a service with log records named after its master.cf command."""
    log.set_program(program)
    await coro


async def _run_singletons(spec: WorkerSpec, runtime: Runtime, lock_fd: int) -> None:
    """Prepare the queue, take the singleton lock, run pickup (and later qmgr)."""
    await offload(fcntl.flock, lock_fd, fcntl.LOCK_EX)
    await offload(prepare_queue, runtime.queue)
    tasks: list[asyncio.Task[None]] = []
    for planned in spec.plan.singletons:
        try:
            run = load_singleton(planned.entry)
        except ImportError as exc:
            log.error(f"service {planned.service.key}: cannot load {planned.entry.target}: {exc}")
            continue
        tasks.append(asyncio.create_task(_as_program(planned.service.command, run(planned.config, runtime))))
    try:
        if tasks:
            await asyncio.gather(*tasks)
        else:
            await asyncio.Event().wait()
    finally:
        for task in tasks:
            task.cancel()
