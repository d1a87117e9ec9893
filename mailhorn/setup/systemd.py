"""The systemd service unit of an instance.

``Type=notify``: systemd starts ``mailhorn -c DIR start-fg`` and counts the
service as started when the master reports ``READY=1`` (after binding its
listeners; :mod:`mailhorn.setup.sdnotify`). ``ExecReload`` sends SIGHUP,
which makes the master re-read main.cf and master.cf. ``KillMode=mixed``
sends the stop signal (SIGTERM) to the master only, which lets its workers
finish their sessions (``master_drain_time``); whatever is left when
``TimeoutStopSec`` ends is killed. Listening on ports below 1024 needs the
master to start as root; it runs its workers as ``mail_owner``.

The unit is written into the configuration directory, never into /etc:
:func:`install_hint` says how to install it.
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys

UNIT_NAME = "mailhorn.service"


def mailhorn_script() -> str | None:
    """The ``mailhorn`` console script of this installation (beside the interpreter), else on PATH."""
    beside = os.path.join(os.path.dirname(sys.executable), "mailhorn")
    if os.access(beside, os.X_OK):
        return beside
    return shutil.which("mailhorn")


def mailhorn_command() -> list[str]:
    """How to run ``mailhorn``: its console script, else ``python -m mailhorn``."""
    script = mailhorn_script()
    return [script] if script else [sys.executable, "-m", "mailhorn"]


def unit_text(command: list[str], config_dir: str, description: str = "mailhorn mail server") -> str:
    """The unit file for running ``command -c CONFIG_DIR start-fg``."""
    exec_start = " ".join(shlex.quote(word) for word in [*command, "-c", config_dir, "start-fg"])
    return f"""\
[Unit]
Description={description}
Documentation=man:postfix(1)
After=network-online.target mariadb.service postgresql.service
Wants=network-online.target

[Service]
Type=notify
NotifyAccess=main
ExecStart={exec_start}
ExecReload=/bin/kill -HUP $MAINPID
KillMode=mixed
KillSignal=SIGTERM
TimeoutStopSec=30
Restart=on-failure
RestartSec=5
LimitNOFILE=65536

[Install]
WantedBy=multi-user.target
"""


def install_hint(unit_path: str) -> list[str]:
    """The commands that install and start the unit."""
    return [
        f"install -m 0644 {shlex.quote(unit_path)} /etc/systemd/system/{UNIT_NAME}",
        "systemctl daemon-reload",
        f"systemctl enable --now {UNIT_NAME}",
    ]
