"""``mailhorn check``: Postfix's ``postfix check`` basics.

Findings are returned as ``(severity, text)`` pairs, severity ``warning`` or
``fatal``; the command prints them and exits 1 when there is any.

* main.cf and master.cf must parse (a ConfigError is fatal), and master.cf's
  entries must be usable: an unknown command, or an inet service whose port
  cannot be resolved, is a warning;
* the queue directory: world-writable (itself or a queue subdirectory) is
  fatal, since any local user could then plant queue files; group-writable is
  a warning (``group or other writable: PATH``). Run by root, the queue
  directory and ``pid`` must be owned by root and the queue subdirectories by
  ``mail_owner`` (``not owned by postfix: PATH``), as postfix-script checks;
* a lookup table of a type mailhorn does not know, in a ``*_maps`` or
  ``*_checks`` parameter or after a ``check_*_access`` restriction, is fatal
  and names the file, line and parameter;
* every table named in an explicitly set parameter (main.cf or a master.cf
  ``-o``) whose type reads a file (``texthash regexp pcre cidr sqlite mysql
  pgsql``) must have that file; ``hash:``/``btree:`` need the ``.sqlite``
  index that postmap builds (``open database /etc/postfix/virtual.sqlite: No
  such file or directory``), and an index older than its source is reported
  as Postfix does (``database X is older than source file Y``);
* certificate and key files (``smtpd_tls_cert_file``/``key_file``,
  ``smtpd_tls_eccert_file``/``eckey_file``, ``smtpd_tls_chain_files``,
  ``smtp_tls_cert_file``/``key_file``, in main.cf and ``-o`` overrides) must
  be readable and the key must match the certificate.
"""

from __future__ import annotations

import os
import ssl
import stat
from collections.abc import Iterable, Iterator

from mailhorn.config.errors import ConfigError
from mailhorn.config.load import Config, load
from mailhorn.config.maincf import split_list
from mailhorn.master.listeners import BindError, endpoints
from mailhorn.queue.store import QUEUE_NAMES
from mailhorn.services import plan, read_services

Finding = tuple[str, str]

#: Table types that read a file named by the table name.
FILE_TABLES = frozenset({"texthash", "regexp", "pcre", "cidr", "sqlite", "mysql", "pgsql"})
INDEXED_TABLES = frozenset({"hash", "btree"})
INDEX_SUFFIX = ".sqlite"

#: (certificate parameter, key parameter) pairs.
CERT_PAIRS = (
    ("smtpd_tls_cert_file", "smtpd_tls_key_file"),
    ("smtpd_tls_eccert_file", "smtpd_tls_eckey_file"),
    ("smtpd_tls_dcert_file", "smtpd_tls_dkey_file"),
    ("smtp_tls_cert_file", "smtp_tls_key_file"),
    ("smtp_tls_eccert_file", "smtp_tls_eckey_file"),
)
CHAIN_PARAMS = ("smtpd_tls_chain_files", "smtp_tls_chain_files")


def run_check(config_dir: str) -> list[Finding]:
    """Every finding for the configuration in ``config_dir``."""
    try:
        config = load(config_dir)
        master_cf = read_services(config_dir)
        service_plan = plan(master_cf, config)
    except ConfigError as exc:
        return [("fatal", str(exc))]
    findings: list[Finding] = [("warning", w) for w in service_plan.warnings]
    configs = [("", config)]
    for planned in service_plan.network:
        try:
            endpoints(planned.service, planned.config)
        except (BindError, ConfigError) as exc:
            findings.append(("warning", f"{planned.service.file}: line {planned.service.line}: "
                                        f"service {planned.service.key}: {exc}"))
    for service in master_cf.services:
        if service.overrides:
            configs.append((f"{service.key}: ", config.with_overrides(service.overrides)))
    try:
        findings += check_queue(config)
        for label, cfg in configs:
            names = list(cfg.overrides) if label else list(cfg.entries)
            findings += [(s, label + t) for s, t in check_tables(cfg, names)]
            findings += [(s, label + t) for s, t in check_certificates(cfg, names if label else None)]
    except ConfigError as exc:
        findings.append(("fatal", str(exc)))
    return findings


def check_queue(config: Config) -> list[Finding]:
    """Ownership and permissions of the queue directory tree."""
    root = config.get("queue_directory")
    findings: list[Finding] = []
    try:
        st = os.stat(root)
    except FileNotFoundError:
        return findings  # start creates it
    except OSError as exc:
        return [("fatal", f"{root}: {exc.strerror}")]
    as_root = os.geteuid() == 0
    owner_uid: int | None = None
    owner = config.get("mail_owner")
    if as_root:
        import pwd

        try:
            owner_uid = pwd.getpwnam(owner).pw_uid
        except KeyError:
            findings.append(("fatal", f"parameter mail_owner: unknown user name value: {owner}"))
    root_level = [root, os.path.join(root, config.get("process_id_directory"))]
    for path in root_level + [os.path.join(root, name) for name in (*QUEUE_NAMES, "private", "public")]:
        try:
            st = os.lstat(path)
        except OSError:
            continue
        if st.st_mode & stat.S_IWOTH:
            findings.append(("fatal", f"{path}: queue directory is world-writable"))
        elif st.st_mode & stat.S_IWGRP and os.path.basename(path) != "maildrop":
            findings.append(("warning", f"group or other writable: {path}"))
        if not as_root:
            continue
        if path in root_level:
            if st.st_uid != 0:
                findings.append(("warning", f"not owned by root: {path}"))
        elif owner_uid is not None and st.st_uid != owner_uid:
            findings.append(("warning", f"not owned by {owner}: {path}"))
    corrupt = os.path.join(root, "corrupt")
    if os.path.isdir(corrupt):
        for name in sorted(os.listdir(corrupt)):
            findings.append(("warning", f"damaged message: corrupt/{name}"))
    return findings


def table_specs(config: Config, names: Iterable[str]) -> Iterator[tuple[str, str, str]]:
    """(parameter, type, name) of each ``type:name`` item in the given parameters."""
    from mailhorn.tables.registry import TABLE_TYPES

    for param in list(names):
        if param in _PERMISSION_LISTS:
            continue
        value = config.get(param)
        for item in split_list(value):
            spec = item.removeprefix("proxy:")
            kind, sep, name = spec.partition(":")
            if sep and kind in TABLE_TYPES and name:
                yield param, kind, name


#: Restrictions whose argument is a lookup table (access(5)).
_ACCESS_RESTRICTIONS = frozenset({
    "check_client_access", "check_reverse_client_access", "check_helo_access", "check_sender_access",
    "check_recipient_access", "check_etrn_access", "check_ccert_access", "check_sasl_access",
    "check_helo_mx_access", "check_sender_mx_access", "check_recipient_mx_access",
    "check_client_mx_access", "check_helo_a_access", "check_sender_a_access",
    "check_recipient_a_access", "check_client_a_access", "check_helo_ns_access",
    "check_sender_ns_access", "check_recipient_ns_access", "check_client_ns_access",
})


#: Parameters that list tables to allow rather than tables to open: the proxy
#: map server's permission lists (Postfix never opens what they name).
_PERMISSION_LISTS = frozenset({"proxy_read_maps", "proxy_write_maps"})


def _table_items(param: str, value: str) -> Iterator[str]:
    """The items of ``param`` that must be ``type:name`` lookup tables."""
    if param in _PERMISSION_LISTS:
        return
    items = split_list(value)
    if param.endswith(("_maps", "_checks")) or param == "alias_database":
        yield from items
    elif param.endswith("_restrictions") or param.startswith("smtpd_restriction_class"):
        for before, item in zip(items, items[1:]):
            if before in _ACCESS_RESTRICTIONS:
                yield item


def unknown_table_types(config: Config, names: Iterable[str]) -> list[Finding]:
    """A table type mailhorn does not know is fatal, as when a daemon opens it
    (``unsupported dictionary type: X``); the finding names file, line and parameter."""
    from mailhorn.tables.registry import TABLE_TYPES

    findings: list[Finding] = []
    for param in list(names):
        for item in _table_items(param, config.get(param)):
            spec = item.removeprefix("proxy:")
            kind, sep, _name = spec.partition(":")
            if not sep or kind in TABLE_TYPES or not kind.replace("-", "").isalnum():
                continue
            file, line = config.where(param)
            where = f"{file}, line {line}: " if file else ""
            findings.append(("fatal", f"{where}parameter {param}: unsupported dictionary type: {kind}"))
    return findings


def check_tables(config: Config, names: Iterable[str]) -> list[Finding]:
    """Unknown table types, missing table files and stale indexes."""
    findings: list[Finding] = unknown_table_types(config, names)
    seen: set[tuple[str, str]] = set()
    for param, kind, name in table_specs(config, names):
        if (kind, name) in seen:
            continue
        seen.add((kind, name))
        if kind in INDEXED_TABLES:
            index = name + INDEX_SUFFIX
            if not os.path.exists(index):
                findings.append(("warning", f"{param}: {kind}:{name}: open database {index}: "
                                            "No such file or directory"))
            elif os.path.exists(name) and os.path.getmtime(name) > os.path.getmtime(index):
                findings.append(("warning", f"{param}: database {index} is older than source file {name}"))
        elif kind in FILE_TABLES:
            if kind in ("mysql", "pgsql", "sqlite") and not name.startswith("/"):
                continue  # parameters in main.cf (NAME_hosts, ...), not a file
            if not os.path.exists(name):
                findings.append(("warning", f"{param}: {kind}:{name}: open {name}: No such file or directory"))
            elif not os.access(name, os.R_OK):
                findings.append(("warning", f"{param}: {kind}:{name}: open {name}: Permission denied"))
    return findings


def check_certificates(config: Config, names: Iterable[str] | None) -> list[Finding]:
    """Certificate/key files readable and matching; ``names`` limits to those parameters."""
    wanted = None if names is None else set(names)
    findings: list[Finding] = []
    for cert_param, key_param in CERT_PAIRS:
        if wanted is not None and cert_param not in wanted and key_param not in wanted:
            continue
        cert = config.get(cert_param).strip()
        if not cert:
            continue
        key = config.get(key_param).strip() or cert
        findings += _check_pair(cert, key)
    for chain_param in CHAIN_PARAMS:
        if wanted is not None and chain_param not in wanted:
            continue
        for path in config.list(chain_param):
            findings += _check_pair(path, path)
    return findings


def _check_pair(cert: str, key: str) -> list[Finding]:
    for path in dict.fromkeys((cert, key)):
        try:
            with open(path, "rb"):
                pass
        except OSError as exc:
            return [("warning", f"cannot open file {path}: {exc.strerror}")]
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(cert, key)
    except ssl.SSLError as exc:
        if "KEY_VALUES_MISMATCH" in str(exc) or "key values mismatch" in str(exc):
            return [("warning", f"private key in {key} does not match the certificate in {cert}")]
        return [("warning", f"cannot load certificate and key from {cert} and {key}: {exc.reason or exc}")]
    return []
