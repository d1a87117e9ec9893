"""The user database: where a logged-in user's mail is, and as whom to read it.

What it does
    :class:`UserDB` answers, for a canonical user name (the login after
    ``auth_username_format``), a :class:`UserInfo`: uid, gid, home, Maildir
    and quota.  It reads the Postfix settings the site already has, so the
    POP3/IMAP servers find mail exactly where Postfix's delivery agents put
    it:

    * **virtual mailboxes** (the user's domain is in
      ``virtual_mailbox_domains``, seeds 002 and 003): the Maildir is
      ``virtual_mailbox_base/`` + the ``virtual_mailbox_maps`` result, which
      must end in ``/`` (virtual(8): a trailing slash means Maildir); home is
      that directory.  uid and gid come from ``virtual_uid_maps`` and
      ``virtual_gid_maps`` (``static:5000``) and must not be below
      ``virtual_minimum_uid``; the quota from ``virtual_mailbox_limit_maps``
      (the VDA patch's table, seed 003) or else ``virtual_mailbox_limit``.
      Each table is searched with the full address, then with ``@domain``
      (postconf(5) ``virtual_mailbox_maps``).
    * **local users** (a bare name, or a ``mydestination`` domain, seeds 001
      and 004): the passwd entry of the name gives uid, gid and home; the
      Maildir is home + ``home_mailbox`` when that ends in ``/``
      (``Maildir/``), or ``mail_spool_directory/NAME`` when the spool
      directory ends in ``/`` (local(8)).  No quota.  root (uid 0) is not
      served.
    * **``userdb_maps``** (optional): a table whose value holds Dovecot
      userdb extra fields, ``home=… uid=… gid=… mail=maildir:…
      quota_rule=*:storage=N`` (``userdb_`` prefixes accepted); the fields
      given override those found above, and the table alone may define a
      user.  ``home=`` understands ``%u %n %d``, ``mail=maildir:PATH``
      also ``~/`` and ``%h``;
      a bare ``storage=`` number is in kilobytes, ``bytes=`` in bytes,
      suffixes ``b k M G T`` as in Dovecot.

    Path safety: a Maildir found through the Postfix tables must stay under
    its base (``virtual_mailbox_base`` or the user's home); ``..`` components
    are refused everywhere.

Parameters read
    ``userdb_maps``, ``virtual_mailbox_domains``, ``virtual_mailbox_maps``,
    ``virtual_mailbox_base``, ``virtual_uid_maps``, ``virtual_gid_maps``,
    ``virtual_minimum_uid``, ``virtual_mailbox_limit_maps``,
    ``virtual_mailbox_limit``, ``mydestination``, ``myorigin``,
    ``home_mailbox``, ``mail_spool_directory``.

Errors
    :meth:`UserDB.lookup` returns None for an unknown user, raises
    :class:`TableRetry` when a table cannot be read now, and
    :class:`UserdbError` for a user whose entry is unusable (no uid, an
    mbox instead of a Maildir, a path leaving its base, root).
"""

from __future__ import annotations

import posixpath
import pwd
import re
from dataclasses import dataclass, replace

from mailhorn.auth.passdb import expand_variables, login_variables
from mailhorn.config.errors import ConfigError
from mailhorn.config.load import Config
from mailhorn.config.maincf import split_list
from mailhorn.iopool import offload
from mailhorn.tables.base import Table, TableConfigError, TableRetry
from mailhorn.tables.matchlist import DomainList, MatchListRetry, domain_list_from_config
from mailhorn.tables.registry import open_table


class UserdbError(Exception):
    """A user whose mail cannot be served: the message says why."""


@dataclass(frozen=True)
class UserInfo:
    """Where a user's mail is.  ``quota_bytes`` 0 means no limit."""

    login: str
    address: str
    uid: int
    gid: int
    home: str
    maildir: str
    quota_bytes: int


# --- Dovecot extra fields -----------------------------------------------------------

_SIZE_RE = re.compile(r"^(\d+)([bkmgt]?)$", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}


def parse_extra_fields(value: str) -> dict[str, str]:
    """``key=value`` words of a userdb value; ``userdb_`` prefixes dropped, first wins."""
    fields: dict[str, str] = {}
    for word in value.split():
        key, _, val = word.partition("=")
        key = key.lower().removeprefix("userdb_")
        fields.setdefault(key, val)
    return fields


def parse_quota_rule(rule: str) -> int:
    """The byte limit of a ``*:storage=N`` / ``*:bytes=N`` rule (Dovecot quota_rule).

    Only the ``*`` (whole mailbox) rule sets a limit; ``storage`` counts in
    kilobytes without a suffix.  0 is no limit.
    """
    name, _, limits = rule.partition(":")
    if name != "*":
        raise UserdbError(f"quota_rule {rule!r}: only the '*' rule is supported")
    for item in limits.split(":"):
        key, _, amount = item.partition("=")
        key = key.lower()
        if key not in ("storage", "bytes"):
            continue
        match = _SIZE_RE.match(amount.strip())
        if match is None:
            raise UserdbError(f"quota_rule {rule!r}: invalid size {amount!r}")
        unit = match.group(2).lower()
        if not unit:
            return int(match.group(1)) * (1024 if key == "storage" else 1)
        return int(match.group(1)) * _SIZE_UNITS[unit]
    return 0


def _number(value: str, what: str, user: str) -> int:
    try:
        number = int(value.strip(), 10)
    except ValueError:
        raise UserdbError(f"{user}: {what} is not a number: {value!r}") from None
    if number < 0:
        raise UserdbError(f"{user}: {what} is negative: {value}")
    return number


def _no_dotdot(path: str, user: str) -> None:
    if ".." in path.split("/"):
        raise UserdbError(f"{user}: mail path {path!r} contains '..'")


def _under(base: str, path: str, user: str) -> str:
    """``path`` normalised, refused unless it stays inside ``base``."""
    _no_dotdot(path, user)
    norm = posixpath.normpath(path)
    root = posixpath.normpath(base)
    if not posixpath.isabs(norm) or (norm != root and not norm.startswith(root.rstrip("/") + "/")):
        raise UserdbError(f"{user}: mail path {path!r} is outside {base!r}")
    return norm


def maildir_from_mail(mail: str, values: dict[str, str], user: str) -> str:
    """The directory of a Dovecot ``mail=maildir:PATH[:KEY=VALUE…]`` field."""
    kind, sep, rest = mail.partition(":")
    if not sep or kind.lower() != "maildir":
        raise UserdbError(f"{user}: mail={mail!r}: only maildir: locations are supported")
    path = rest.split(":", 1)[0]
    try:
        path = expand_variables(path, values, "userdb_maps mail")
    except ConfigError as exc:
        raise UserdbError(f"{user}: {exc}") from None
    if path == "~" or path.startswith("~/"):
        if not values.get("h"):
            raise UserdbError(f"{user}: mail={mail!r} uses ~ but there is no home")
        path = values["h"] + path[1:]
    if not posixpath.isabs(path):
        raise UserdbError(f"{user}: mail={mail!r} is not an absolute path")
    _no_dotdot(path, user)
    return posixpath.normpath(path)


# --- the user database ---------------------------------------------------------------


class _Maps:
    """A ``*_maps`` parameter's tables, opened on first use."""

    def __init__(self, config: Config, name: str) -> None:
        self.name = name
        raw = config.raw(name)
        self.specs = split_list(config.get(name)) if raw is not None else []
        self._config = config
        self._tables: list[Table] | None = None

    def tables(self) -> list[Table]:
        if self._tables is None:
            self._tables = [open_table(spec, self._config) for spec in self.specs]
        return self._tables

    def find(self, *keys: str) -> str | None:
        """The first value for the first key that any table has (mail_addr_find order)."""
        for key in keys:
            for table in self.tables():
                value = table.lookup(key)
                if value is not None:
                    return value
        return None


class UserDB:
    """Resolves users to :class:`UserInfo` from the Postfix configuration."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.userdb_maps = _Maps(config, "userdb_maps") if config.get("userdb_maps") else None
        self.mailbox_maps = _Maps(config, "virtual_mailbox_maps")
        self.uid_maps = _Maps(config, "virtual_uid_maps")
        self.gid_maps = _Maps(config, "virtual_gid_maps")
        self.limit_maps = _Maps(config, "virtual_mailbox_limit_maps")
        self._virtual: DomainList | None = None
        self._local: DomainList | None = None

    def _match(self, param: str, domain: str) -> bool:
        lists = {"virtual_mailbox_domains": self._virtual, "mydestination": self._local}
        found = lists[param]
        if found is None:
            found = domain_list_from_config(self.config, param)
            if param == "mydestination":
                self._local = found
            else:
                self._virtual = found
        try:
            return found.match(domain)
        except MatchListRetry as exc:
            raise TableRetry(str(exc)) from exc

    def lookup(self, user: str) -> UserInfo | None:
        """The :class:`UserInfo` of ``user``, or None when unknown."""
        try:
            derived = self._derived(user)
            fields = None
            if self.userdb_maps is not None:
                value = self.userdb_maps.find(user)
                fields = None if value is None else parse_extra_fields(value)
        except (TableConfigError, ConfigError) as exc:
            raise UserdbError(f"{user}: {exc}") from exc
        if fields is None:
            return derived
        return self._override(user, derived, fields)

    async def lookup_async(self, user: str) -> UserInfo | None:
        """:meth:`lookup` in a worker thread (tables may block)."""
        return await offload(self.lookup, user)

    def _derived(self, user: str) -> UserInfo | None:
        local, at, domain = user.rpartition("@")
        if at and local and domain and self._match("virtual_mailbox_domains", domain.lower()):
            return self._virtual_user(user, domain.lower())
        if not at:
            return self._local_user(user, user)
        if local and domain and self._match("mydestination", domain.lower()):
            return self._local_user(user, local)
        return None

    def _virtual_user(self, user: str, domain: str) -> UserInfo | None:
        keys = (user, "@" + domain)
        mailbox = self.mailbox_maps.find(*keys)
        if mailbox is None:
            return None
        base = self.config.get("virtual_mailbox_base")
        if not base.startswith("/"):
            raise UserdbError(f"{user}: virtual_mailbox_base must be an absolute path: {base!r}")
        if not mailbox.endswith("/"):
            raise UserdbError(f"{user}: virtual mailbox {mailbox!r} is an mbox file, not a Maildir")
        maildir = _under(base, base.rstrip("/") + "/" + mailbox, user)
        uid_text = self.uid_maps.find(*keys)
        gid_text = self.gid_maps.find(*keys)
        if uid_text is None:
            raise UserdbError(f"{user}: recipient has no uid (virtual_uid_maps)")
        if gid_text is None:
            raise UserdbError(f"{user}: recipient has no gid (virtual_gid_maps)")
        uid, gid = _number(uid_text, "uid", user), _number(gid_text, "gid", user)
        minimum = self.config.int("virtual_minimum_uid")
        if uid < minimum:
            raise UserdbError(f"{user}: uid {uid} is below virtual_minimum_uid {minimum}")
        limit = self.limit_maps.find(*keys)
        quota = _number(limit, "quota", user) if limit is not None else self.config.int("virtual_mailbox_limit")
        return UserInfo(user, user, uid, gid, maildir, maildir, quota)

    def _local_user(self, user: str, name: str) -> UserInfo | None:
        if not name or "/" in name or "\0" in name:
            return None
        try:
            pw = pwd.getpwnam(name)
        except (KeyError, ValueError):
            return None
        if pw.pw_uid == 0:
            raise UserdbError(f"{user}: mail for root is not served; alias root to a user")
        home = pw.pw_dir
        home_mailbox = self.config.get("home_mailbox").strip()
        if home_mailbox:
            if not home_mailbox.endswith("/"):
                raise UserdbError(f"{user}: home_mailbox {home_mailbox!r} is an mbox file, not a Maildir")
            if posixpath.isabs(home_mailbox):
                raise UserdbError(f"{user}: home_mailbox {home_mailbox!r} must be relative to the home directory")
            maildir = _under(home, home.rstrip("/") + "/" + home_mailbox, user)
        else:
            spool = self.config.get("mail_spool_directory").strip()
            if not spool.endswith("/"):
                raise UserdbError(f"{user}: mail_spool_directory {spool!r} holds mbox files, not Maildirs")
            maildir = _under(spool, spool + pw.pw_name, user)
        address = user if "@" in user else f"{user}@{self.config.get('myorigin')}"
        return UserInfo(user, address, pw.pw_uid, pw.pw_gid, home, maildir, 0)

    def _override(self, user: str, derived: UserInfo | None, fields: dict[str, str]) -> UserInfo:
        info = derived
        uid = _number(fields["uid"], "uid", user) if "uid" in fields else (info.uid if info else None)
        gid = _number(fields["gid"], "gid", user) if "gid" in fields else (info.gid if info else None)
        home = fields.get("home", "")
        if home:
            try:
                home = expand_variables(home, login_variables(user), "userdb_maps home")
            except ConfigError as exc:
                raise UserdbError(f"{user}: {exc}") from None
        else:
            home = info.home if info else ""
        if home:
            if not posixpath.isabs(home):
                raise UserdbError(f"{user}: home {home!r} is not an absolute path")
            _no_dotdot(home, user)
        values = {**login_variables(user), "h": home}
        if "mail" in fields:
            maildir = maildir_from_mail(fields["mail"], values, user)
        elif info is not None:
            maildir = info.maildir
        elif home:
            maildir = posixpath.normpath(home + "/Maildir")
        else:
            raise UserdbError(f"{user}: userdb_maps gives neither mail= nor home=")
        if uid is None or gid is None:
            raise UserdbError(f"{user}: userdb_maps gives no uid= or gid=")
        if uid == 0:
            raise UserdbError(f"{user}: mail for root is not served")
        quota = parse_quota_rule(fields["quota_rule"]) if "quota_rule" in fields else (info.quota_bytes if info else 0)
        base = info or UserInfo(user, user, uid, gid, home or maildir, maildir, quota)
        return replace(base, uid=uid, gid=gid, home=home or maildir, maildir=maildir, quota_bytes=quota)
