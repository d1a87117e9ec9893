"""``mailhorn postconf``: show and edit main.cf and master.cf (postconf(1)).

Usage, as Postfix 3.7's postconf::

    postconf [-dfhHnx] [-c dir] [-o name=value] [name ...]
    postconf -e [-c dir] name=value ...     postconf -# | -X [-c dir] name ...
    postconf -M | -F | -P [-f] [-c dir] [service[/type[/field-or-param]] ...]
    postconf -M -e 'service/type = entry'   postconf -M -# | -X service/type ...
    postconf -m | -l

``-d`` defaults, ``-n`` only what main.cf sets, ``-h`` values only, ``-H``
names only, ``-x`` expanded values, ``-f`` fold long lines, ``-o`` override a
value for this run; ``-M`` master.cf entries, ``-F`` their fields, ``-P``
their ``-o`` overrides; ``-m`` table types, ``-l`` mailbox lock methods.

Parameters read: every parameter of the registry, main.cf from ``-c DIR`` (or
``MAIL_CONFIG``, or /etc/postfix), and master.cf for service-defined names.

Output and warnings follow Postfix's byte for byte, except that names
appended by ``-e`` keep the command-line order (Postfix's order is random)
and a malformed ``$`` reference is reported with its file and line.
Exit status 1 on any fatal error.
"""

from __future__ import annotations

import getopt
import os
import sys
from dataclasses import dataclass, field

from mailhorn import log
from mailhorn.cli.postconf_params import RAW_PARAMETERS, Catalog, build_catalog
from mailhorn.cli.postconf_print import master_entry, param_line, value_line
from mailhorn.config import edit
from mailhorn.config.errors import ConfigError
from mailhorn.config.load import DEFAULT_CONFIG_DIR
from mailhorn.config.maincf import Entry, read_main_cf
from mailhorn.config.mastercf import FIELD_NAMES, MasterCf, Service, parse_entry, read_master_cf
from mailhorn.config.params import PARAMS

OPTSTRING = "c:deEfFhHlmMno:pPxX#"

USAGE = (
    "usage: postconf [-c config_dir] [-d (parameter defaults)] [-e (edit configuration)]"
    " [-f (fold lines)] [-F (master.cf fields)] [-h (no names)] [-H (no values)]"
    " [-l (lock types)] [-m (map types)] [-M (master.cf)] [-n (non-default parameters)]"
    " [-o name=value (override parameter value)] [-p (main.cf, default)]"
    " [-P (master.cf parameters)] [-x (expand parameter values)] [-X (exclude)]"
    " [-# (comment-out)] [name...]"
)

#: Lock methods mailhorn's mailbox delivery supports (postconf -l).
LOCK_METHODS = ("flock", "fcntl", "dotlock")

#: Options that pick what postconf works on; at most one of each group.
_EXCLUSIVE = (("-d", "-n"), ("-e", "-X", "-#"), ("-h", "-H"), ("-M", "-F", "-P"))


@dataclass
class Options:
    """The parsed command line."""

    config_dir: str = DEFAULT_CONFIG_DIR
    flags: set[str] = field(default_factory=set)
    overrides: dict[str, str] = field(default_factory=dict)
    args: list[str] = field(default_factory=list)

    def has(self, flag: str) -> bool:
        return flag in self.flags


def parse_options(argv: list[str]) -> Options:
    """getopt with GNU argument permutation, as Postfix gets it from glibc."""
    opts = Options(config_dir=os.environ.get("MAIL_CONFIG") or DEFAULT_CONFIG_DIR)
    try:
        pairs, args = getopt.gnu_getopt(argv, OPTSTRING)
    except getopt.GetoptError as exc:
        print(f"postconf: invalid option -- '{exc.opt}'", file=sys.stderr)
        log.fatal(USAGE)
    for flag, value in pairs:
        if flag == "-c":
            opts.config_dir = value
        elif flag == "-o":
            name, sep, val = value.partition("=")
            if not sep:
                log.fatal(f'missing \'=\' after attribute name: "{value}"')
            opts.overrides[name.strip()] = val.strip()
        else:
            opts.flags.add(flag)
    for group in _EXCLUSIVE:
        chosen = [f for f in group if f in opts.flags]
        if len(chosen) > 1:
            log.fatal("specify one of " + " ".join(chosen))
    for master_flag in ("-M", "-F", "-P"):
        if master_flag in opts.flags:
            for other in ("-n", "-d", "-x", "-h", "-H"):
                if other in opts.flags:
                    log.fatal(f"with option {master_flag}, do not specify {other}")
    opts.args = args
    return opts


def run(argv: list[str]) -> int:
    """Entry point: ``argv`` without the program name."""
    log.setup("postconf", stderr=True, syslog_path=None)
    opts = parse_options(argv)
    try:
        return _run(opts)
    except ConfigError as exc:
        log.fatal(str(exc))


def _run(opts: Options) -> int:
    if opts.has("-m"):
        from mailhorn.tables.registry import TABLE_TYPES

        for name in sorted({*TABLE_TYPES, "proxy", "unix"}):
            print(name)
        return 0
    if opts.has("-l"):
        for name in LOCK_METHODS:
            print(name)
        return 0
    # Postfix joins with a plain "/", so "DIR/" gives "DIR//main.cf" in messages.
    main_path = f"{opts.config_dir}/main.cf"
    master_path = f"{opts.config_dir}/master.cf"
    master_mode = next((f for f in ("-M", "-F", "-P") if opts.has(f)), None)
    edit_mode = next((f for f in ("-e", "-X", "-#") if opts.has(f)), None)
    if edit_mode is not None:
        return _edit(opts, edit_mode, master_mode, main_path, master_path)
    master = _read_master(master_path, fatal_if_missing=master_mode is not None)
    entries: list[Entry] = [] if opts.has("-d") else read_main_cf(main_path)
    catalog = build_catalog(entries, main_path, master, opts.config_dir, opts.overrides)
    if not opts.has("-d"):
        for text in catalog.warnings:
            log.warning(text)
        if master_mode is None:
            for text in catalog.unused_warnings:
                log.warning(text)
        for text in catalog.master_unused_warnings:
            log.warning(text)
    if master is not None:
        for problem in master.warnings:
            log.warning(f"{os.path.basename(problem.file)}: {problem.text}")
    if master_mode is not None:
        assert master is not None
        _print_master(opts, master_mode, master)
    else:
        _print_params(opts, catalog)
    return 0


def _read_master(path: str, fatal_if_missing: bool) -> MasterCf | None:
    if not os.path.exists(path):
        if fatal_if_missing:
            log.fatal(f"open {path}: No such file or directory")
        log.warning(f"open {path}: No such file or directory")
        return None
    return read_master_cf(path)


# -- main.cf parameters ------------------------------------------------------

def _print_params(opts: Options, catalog: Catalog) -> None:
    defaults = opts.has("-d")
    fold = opts.has("-f")

    def value_of(name: str) -> str | None:
        expand = opts.has("-x") and name not in RAW_PARAMETERS
        if defaults:
            default = catalog.default(name, catalog.value)
            if default is None:
                return None
            return catalog.expand(default, name) if expand else default
        raw = catalog.raw(name)
        if raw is None:
            return None
        return catalog.value(name) if expand else raw

    def show(name: str, value: str) -> None:
        if opts.has("-h"):
            print(value_line(value, fold))
        elif opts.has("-H"):
            print(name)
        else:
            print(param_line(name, value, fold))

    if opts.args:
        for name in opts.args:
            if defaults:
                known = name in PARAMS or name in catalog.service
            else:
                known = catalog.known(name)
            if not known:
                log.warning(f"{name}: unknown parameter")
                continue
            if opts.has("-n") and catalog.explicit(name) is None:
                continue
            value = value_of(name)
            if value is not None:
                show(name, value)
        return
    if defaults:
        names = sorted(set(PARAMS) | set(catalog.service))
    else:
        names = catalog.names()
    for name in names:
        if opts.has("-n") and catalog.explicit(name) is None:
            continue
        value = value_of(name)
        if value is not None:
            show(name, value)


# -- master.cf -----------------------------------------------------------------

def _matches(pattern: str, parts: tuple[str, ...]) -> bool:
    """``service/type/field`` patterns: ``*`` matches anything, missing parts match all."""
    wanted = pattern.split("/")
    if len(wanted) > len(parts):
        return False
    return all(w == "*" or w == p for w, p in zip(wanted, parts))


def _print_master(opts: Options, mode: str, master: MasterCf) -> None:
    fold = opts.has("-f")
    patterns = opts.args
    matched = [False] * len(patterns)
    for service in master.services:
        if mode == "-M":
            hits = [i for i, p in enumerate(patterns) if _matches(p, (service.name, service.type))]
            for i in hits:
                matched[i] = True
            if hits or not patterns:
                print(master_entry(service, fold))
            continue
        fields = _fields(service) if mode == "-F" else sorted(service.overrides.items())
        for i, pattern in enumerate(patterns or ["*"]):
            for name, value in fields:
                if _matches(pattern, (service.name, service.type, name)):
                    if patterns:
                        matched[i] = True
                    label = f"{service.key}/{name}"
                    if mode == "-F" and name == "command":
                        if fold:
                            print(master_entry(service, True, f"{label} = {service.command}"))
                        else:
                            print(f"{label} = {value}")
                    else:
                        print(param_line(label, value, fold))
    for i, pattern in enumerate(patterns):
        if not matched[i]:
            log.warning(f'unmatched request: "{pattern}"')


def _fields(service: Service) -> list[tuple[str, str]]:
    return list(zip(FIELD_NAMES, service.columns()))


# -- editing ---------------------------------------------------------------------

def _edit(opts: Options, mode: str, master_mode: str | None, main_path: str, master_path: str) -> int:
    if not opts.args:
        if mode == "-e":
            log.fatal("-e requires name=value argument")
        log.fatal("missing service argument" if master_mode else f"{mode} requires name argument")
    action = {"-e": edit.SET, "-#": edit.COMMENT, "-X": edit.REMOVE}[mode]
    if master_mode is not None:
        return _edit_master(opts, action, master_mode, master_path)
    edits: dict[str, str] = {}
    for arg in opts.args:
        name, sep, value = arg.partition("=")
        name = name.strip()
        if mode == "-e":
            if not sep:
                log.fatal(f'missing \'=\' after attribute name: "{arg}"')
            if not name:
                log.fatal(f'missing attribute name: "{arg}"')
            if any(c.isspace() for c in name):
                log.fatal(f'missing \'=\' after attribute name: "{arg}"')
            edits[name] = value.strip()
        else:
            if sep:
                log.fatal(f"specify one of -e {mode}")
            edits[name] = ""
    edit.edit_main_cf(main_path, action, edits, log.warning)
    return 0


def _edit_master(opts: Options, action: str, master_mode: str, master_path: str) -> int:
    if master_mode != "-M":
        log.fatal(f"{master_mode} with -e, -X or -# is not supported")
    entries: dict[str, str] = {}
    if action == edit.SET:
        for number, arg in enumerate(opts.args, start=1):
            key, sep, text = arg.partition("=")
            if not sep or "/" not in key:
                log.fatal("-Me, -MX or -M# requires service_name/type")
            service = parse_entry(text.strip(), "command line", number, [])
            entries[key.strip()] = master_entry(service, True)
    else:
        for arg in opts.args:
            if "/" not in arg:
                log.fatal("-Me, -MX or -M# requires service_name/type")

    def selected(name: str, type_: str) -> bool:
        return any(_matches(p, (name, type_)) for p in opts.args)

    edit.edit_master_cf(master_path, action, selected, entries)
    return 0

