"""``mailhorn [-c DIR] start|start-fg|stop|abort|reload|status|check|flush``.

The mail system's control commands, as Postfix's ``postfix`` command and its
postfix-script. Messages are logged and printed on standard error as
``SYSLOG_NAME/postfix-script: TEXT``, with Postfix's texts minus the word
"Postfix":

* start: ``starting the mail system``; the master daemonizes (double fork,
  new session, standard streams on /dev/null) and ``start`` returns once it
  listens. A failure prints the master's ``fatal:`` line and
  ``fatal: mail system startup failed``, status 1;
* start-fg: the master stays in the foreground, logging to standard error too;
* stop: ``stopping the mail system`` (SIGTERM, then waits until it is gone;
  ``waiting for the mail system to terminate`` each second; after
  ``master_drain_time`` plus 10 seconds, ``stopping the mail system with
  force`` and SIGKILL);
* abort: ``aborting the mail system`` (SIGKILL to the master and its workers);
* reload: ``refreshing the mail system``; a new configuration the master
  refuses gives ``fatal: reload failed: REASON``, status 1;
* status: ``the mail system is running: PID: N`` (status 0) or ``the mail
  system is not running`` (status 1);
* flush: asks the queue manager to retry deferred mail; ``fatal: Cannot flush
  mail queue - mail system is down`` (postqueue's text) when not running;
* check: see :mod:`mailhorn.master.check`; status 1 when it finds anything.

stop, abort and reload when nothing runs: ``fatal: the mail system is not
running``, status 1; start when the master runs: ``fatal: the mail system is
already running``, status 1.

Options (after the command too): ``-c DIR`` (else ``MAIL_CONFIG``, else
/etc/postfix).
"""

from __future__ import annotations

import getopt
import os
import signal
import sys
import time
from collections.abc import Callable

from mailhorn import log
from mailhorn.config.errors import ConfigError
from mailhorn.config.load import DEFAULT_CONFIG_DIR, Config, load
from mailhorn.master import control
from mailhorn.master.check import run_check as check_findings
from mailhorn.master.supervisor import drain_time, run_master
from mailhorn.setup import sdnotify

PROGRAM = "postfix-script"


class _Reporter:
    """Prints ``NAME/postfix-script: TEXT`` on stderr and logs TEXT."""

    def __init__(self, config: Config | None) -> None:
        self.name = "mailhorn"
        if config is not None:
            try:
                self.name = config.get("syslog_name") or "mailhorn"
                log.setup(PROGRAM, syslog_name=self.name, facility=config.get("syslog_facility"),
                          maillog_file=config.get("maillog_file"))
            except ConfigError:
                log.setup(PROGRAM)
        else:
            log.setup(PROGRAM)

    def say(self, severity: str, text: str) -> None:
        prefix = "" if severity == "info" else f"{severity}: "
        print(f"{self.name}/{PROGRAM}: {prefix}{text}", file=sys.stderr, flush=True)
        if severity == "info":
            log.info(text)
        elif severity == "warning":
            log.warning(text)
        elif severity == "fatal":
            try:
                log.fatal(text)
            except SystemExit:
                pass
        else:
            log.error(text)


def _config_dir(argv: list[str]) -> str:
    try:
        opts, _args = getopt.getopt(argv, "c:v")
    except getopt.GetoptError as exc:
        print(f"mailhorn: fatal: {exc.msg}", file=sys.stderr)
        raise SystemExit(1) from None
    directory = os.environ.get("MAIL_CONFIG") or DEFAULT_CONFIG_DIR
    for opt, value in opts:
        if opt == "-c":
            directory = value
    return os.path.abspath(directory)


def _setup(argv: list[str]) -> tuple[str, Config | None, _Reporter]:
    directory = _config_dir(argv)
    try:
        config = load(directory)
    except ConfigError as exc:
        reporter = _Reporter(None)
        reporter.say("fatal", str(exc))
        return directory, None, reporter
    return directory, config, _Reporter(config)


def _fatal_findings(directory: str, reporter: _Reporter) -> bool:
    """``postfix start`` runs its check first and refuses on fatal problems."""
    fatal = [text for severity, text in check_findings(directory) if severity == "fatal"]
    for text in fatal:
        reporter.say("fatal", text)
    return bool(fatal)


def _running(config: Config, reporter: _Reporter, *, quiet: bool = False) -> int | None:
    pid = control.running_pid(config)
    if pid is None and not quiet:
        reporter.say("fatal", "the mail system is not running")
    return pid


# -- start --------------------------------------------------------------------


def _may_start(argv: list[str]) -> tuple[str, Config, _Reporter] | None:
    """The checks before a start (config readable, not running, no fatal
    finding, as postfix-script does them); None after reporting a refusal."""
    directory, config, reporter = _setup(argv)
    if config is None:
        return None
    if control.running_pid(config) is not None:
        reporter.say("fatal", "the mail system is already running")
        return None
    if _fatal_findings(directory, reporter):
        return None
    reporter.say("info", "starting the mail system")
    return directory, config, reporter


def run_start(argv: list[str]) -> int:
    """Start the master in the background; return once it listens."""
    ready_to_start = _may_start(argv)
    if ready_to_start is None:
        return 1
    directory, config, reporter = ready_to_start
    read_fd, write_fd = os.pipe()
    child = os.fork()
    if child == 0:
        os.close(read_fd)
        try:
            _daemon(directory, write_fd)
        finally:
            os._exit(1)
    os.close(write_fd)
    chunks = []
    while True:
        chunk = os.read(read_fd, 4096)
        if not chunk:
            break
        chunks.append(chunk)
    os.close(read_fd)
    os.waitpid(child, 0)
    answer = b"".join(chunks).decode("utf-8", "replace")
    if answer == "ok":
        return 0
    if answer:
        print(f"{reporter.name}/master: fatal: {answer}", file=sys.stderr, flush=True)
    reporter.say("fatal", "mail system startup failed")
    return 1


def _daemon(directory: str, write_fd: int) -> None:
    """The first child: new session, second fork, and the master in the grandchild."""
    os.setsid()
    if os.fork() != 0:
        os._exit(0)
    os.chdir("/")
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    if null > 2:
        os.close(null)

    def ready(error: str | None) -> None:
        if error is not None:
            _log_fatal(error)
        os.write(write_fd, b"ok" if error is None else error.encode("utf-8", "replace"))
        os.close(write_fd)

    status = run_master(directory, False, ready)
    os._exit(status)


def _log_fatal(text: str) -> None:
    try:
        log.fatal(text)
    except SystemExit:
        pass


def run_start_fg(argv: list[str]) -> int:
    """Run the master in the foreground (logs also on stderr) until it stops."""
    ready_to_start = _may_start(argv)
    if ready_to_start is None:
        return 1
    directory, config, reporter = ready_to_start
    failed: list[str] = []

    def ready(error: str | None) -> None:
        if error is not None:
            failed.append(error)
            _log_fatal(error)
        else:
            sdnotify.ready(os.getpid())

    status = run_master(directory, True, ready)
    if failed:
        reporter.say("fatal", "mail system startup failed")
    return status


# -- stop, abort ----------------------------------------------------------------


def _wait_gone(config: Config, timeout: float, tick: Callable[[], None] | None = None) -> bool:
    deadline = time.monotonic() + timeout
    next_tick = time.monotonic() + 1.0
    while time.monotonic() < deadline:
        if control.running_pid(config) is None:
            return True
        if tick is not None and time.monotonic() >= next_tick:
            tick()
            next_tick += 1.0
        time.sleep(0.05)
    return control.running_pid(config) is None


def run_stop(argv: list[str]) -> int:
    """SIGTERM to the master; wait until it has stopped."""
    _directory, config, reporter = _setup(argv)
    if config is None:
        return 1
    pid = _running(config, reporter)
    if pid is None:
        return 1
    reporter.say("info", "stopping the mail system")
    _signal(pid, signal.SIGTERM)
    try:
        limit = drain_time(config) + 10.0
    except ConfigError:
        limit = 20.0
    if _wait_gone(config, limit, lambda: reporter.say("info", "waiting for the mail system to terminate")):
        return 0
    reporter.say("warning", "stopping the mail system with force")
    _kill_all(pid)
    _wait_gone(config, 10.0)
    return 0


def _signal(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass


def children_of(pid: int) -> list[int]:
    """Process IDs whose parent is ``pid`` (from /proc)."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", encoding="ascii", errors="replace") as f:
                text = f.read()
        except OSError:
            continue
        fields = text[text.rfind(")") + 2:].split()
        if len(fields) > 1 and fields[1] == str(pid):
            found.append(int(name))
    return found


def _kill_all(pid: int) -> None:
    workers = children_of(pid)
    _signal(pid, signal.SIGKILL)
    for child in workers:
        _signal(child, signal.SIGKILL)


def run_abort(argv: list[str]) -> int:
    """SIGKILL to the master and its workers."""
    _directory, config, reporter = _setup(argv)
    if config is None:
        return 1
    pid = _running(config, reporter)
    if pid is None:
        return 1
    reporter.say("info", "aborting the mail system")
    _kill_all(pid)
    _wait_gone(config, 10.0)
    return 0


# -- reload, status, flush, check -------------------------------------------------


def run_reload(argv: list[str]) -> int:
    """Ask the master to re-read its configuration."""
    _directory, config, reporter = _setup(argv)
    if config is None:
        return 1
    pid = _running(config, reporter)
    if pid is None:
        return 1
    reporter.say("info", "refreshing the mail system")
    try:
        control.request(config, "reload")
    except control.ControlError as exc:
        reporter.say("fatal", f"reload failed: {exc}")
        return 1
    return 0


def run_status(argv: list[str]) -> int:
    """0 and the master's PID when it runs, else 1."""
    _directory, config, reporter = _setup(argv)
    if config is None:
        return 1
    pid = control.running_pid(config)
    if pid is None:
        reporter.say("info", "the mail system is not running")
        return 1
    reporter.say("info", f"the mail system is running: PID: {pid}")
    return 0


def run_flush(argv: list[str]) -> int:
    """Ask the queue manager to retry deferred mail now."""
    _directory, config, reporter = _setup(argv)
    if config is None:
        return 1
    if control.running_pid(config) is None:
        reporter.say("fatal", "Cannot flush mail queue - mail system is down")
        return 1
    try:
        control.request(config, "flush")
    except control.ControlError as exc:
        reporter.say("fatal", f"flush failed: {exc}")
        return 1
    return 0


def run_check(argv: list[str]) -> int:
    """Report configuration and queue problems; 1 when there is any."""
    directory = _config_dir(argv)
    findings = check_findings(directory)
    config: Config | None
    try:
        config = load(directory)
    except ConfigError:
        config = None
    reporter = _Reporter(config)
    for severity, text in findings:
        reporter.say(severity, text)
    return 1 if findings else 0


COMMANDS: dict[str, Callable[[list[str]], int]] = {
    "start": run_start,
    "start-fg": run_start_fg,
    "stop": run_stop,
    "abort": run_abort,
    "reload": run_reload,
    "status": run_status,
    "check": run_check,
    "flush": run_flush,
}


def main(argv: list[str]) -> int:
    """``python -m mailhorn.cli.control [-c DIR] COMMAND [-c DIR]``."""
    args = list(argv)
    while args and args[0] == "-c" and len(args) >= 2:
        os.environ["MAIL_CONFIG"] = args[1]
        args = args[2:]
    if not args or args[0] not in COMMANDS:
        print("usage: mailhorn [-c config_dir] " + "|".join(COMMANDS), file=sys.stderr)
        return 1
    return COMMANDS[args[0]](args[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
