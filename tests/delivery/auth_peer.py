"""A small scripted SMTP server for the client's STARTTLS and AUTH tests.

It speaks just enough ESMTP (EHLO, STARTTLS, AUTH PLAIN/LOGIN, MAIL, RCPT,
DATA, RSET, QUIT) to check what the client sends: every command line is
recorded (``commands``, with TLS state), messages are kept (``messages``).
Options: offer STARTTLS (``cert``/``key``), send ``inject`` bytes right
after the STARTTLS 220 in the same write (the CVE-2011-0411 probe), offer
AUTH mechanisms before and/or after TLS, require AUTH before MAIL.
It runs on 127.0.0.1 in a thread; :meth:`stop` ends it.
"""

from __future__ import annotations

import base64
import socket
import ssl
import threading
from dataclasses import dataclass, field
from pathlib import Path

from tests.helpers.ports import listening_socket


@dataclass
class Seen:
    commands: list[tuple[bool, str]] = field(default_factory=list)
    messages: list[tuple[str, list[str], bytes]] = field(default_factory=list)
    logins: list[tuple[str, str]] = field(default_factory=list)


class AuthPeer:
    def __init__(self, *, cert: Path | None = None, key: Path | None = None, inject: bytes = b"",
                 auth_plain: tuple[str, ...] = (), auth_tls: tuple[str, ...] = ("PLAIN", "LOGIN"),
                 users: dict[str, str] | None = None, require_auth: bool = False) -> None:
        self.context: ssl.SSLContext | None = None
        if cert is not None:
            self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self.context.load_cert_chain(str(cert), str(key))
        self.inject = inject
        self.auth_plain = auth_plain
        self.auth_tls = auth_tls
        self.users = users or {}
        self.require_auth = require_auth
        self.seen = Seen()
        self.listener = listening_socket(backlog=16)
        self.listener.settimeout(0.1)
        self.port = self.listener.getsockname()[1]
        self._stop = False
        self._threads: list[threading.Thread] = []
        self._main = threading.Thread(target=self._accept, daemon=True)
        self._main.start()

    @property
    def nexthop(self) -> str:
        return f"[127.0.0.1]:{self.port}"

    def stop(self) -> None:
        self._stop = True
        self._main.join(10)
        for t in self._threads:
            t.join(10)
        self.listener.close()

    def _accept(self) -> None:
        while not self._stop:
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            t = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self._threads.append(t)
            t.start()

    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(10)
        session = _Session(self, conn)
        try:
            session.run()
        except (OSError, ssl.SSLError, EOFError):
            pass
        finally:
            session.sock.close()
            conn.close()


class _Session:
    def __init__(self, peer: AuthPeer, sock: socket.socket) -> None:
        self.peer = peer
        self.sock: socket.socket = sock
        self.buf = b""
        self.tls = False
        self.authed = False
        self.sender = ""
        self.rcpts: list[str] = []

    def send(self, text: str) -> None:
        self.sock.sendall(text.encode() + b"\r\n")

    def line(self) -> str:
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError
            self.buf += chunk
        raw, self.buf = self.buf.split(b"\r\n", 1)
        return raw.decode("utf-8", "replace")

    def mechanisms(self) -> tuple[str, ...]:
        return self.peer.auth_tls if self.tls else self.peer.auth_plain

    def run(self) -> None:
        self.send("220 peer.example.test ESMTP")
        while True:
            cmd = self.line()
            self.peer.seen.commands.append((self.tls, cmd))
            verb = cmd.split(" ", 1)[0].upper()
            if verb == "EHLO":
                lines = ["peer.example.test", "PIPELINING", "SIZE 10240000", "8BITMIME", "ENHANCEDSTATUSCODES"]
                if self.peer.context is not None and not self.tls:
                    lines.append("STARTTLS")
                if self.mechanisms():
                    lines.append("AUTH " + " ".join(self.mechanisms()))
                for text in lines[:-1]:
                    self.sock.sendall(f"250-{text}\r\n".encode())
                self.send(f"250 {lines[-1]}")
            elif verb == "STARTTLS" and self.peer.context is not None and not self.tls:
                self.sock.sendall(b"220 2.0.0 Ready to start TLS\r\n" + self.peer.inject)
                self.buf = b""
                self.sock = self.peer.context.wrap_socket(self.sock, server_side=True)
                self.tls = True
            elif verb == "AUTH":
                self.auth(cmd)
            elif verb == "MAIL":
                if self.peer.require_auth and not self.authed:
                    self.send("530 5.7.0 Authentication required")
                    continue
                self.sender = cmd[10:].split(">", 1)[0].lstrip("<")
                self.rcpts = []
                self.send("250 2.1.0 Ok")
            elif verb == "RCPT":
                self.rcpts.append(cmd[8:].split(">", 1)[0].lstrip("<"))
                self.send("250 2.1.5 Ok")
            elif verb == "DATA":
                self.send("354 End data with <CR><LF>.<CR><LF>")
                body = bytearray()
                while True:
                    data = self.line()
                    if data == ".":
                        break
                    body += (data[1:] if data.startswith(".") else data).encode() + b"\n"
                self.peer.seen.messages.append((self.sender, self.rcpts, bytes(body)))
                self.send(f"250 2.0.0 Ok: queued as Q{len(self.peer.seen.messages)}")
            elif verb == "RSET":
                self.send("250 2.0.0 Ok")
            elif verb == "QUIT":
                self.send("221 2.0.0 Bye")
                return
            else:
                self.send("502 5.5.2 Error: command not recognized")

    def auth(self, cmd: str) -> None:
        words = cmd.split()
        mech = words[1].upper() if len(words) > 1 else ""
        if mech not in self.mechanisms():
            self.send("535 5.7.8 Error: authentication failed: mechanism not offered")
            return
        if mech == "PLAIN":
            if len(words) > 2:
                token = words[2]
            else:
                self.send("334 ")
                token = self.line()
            parts = base64.b64decode(token).split(b"\0")
            user, password = parts[1].decode(), parts[2].decode()
        else:
            self.send("334 VXNlcm5hbWU6")
            user = base64.b64decode(self.line()).decode()
            self.send("334 UGFzc3dvcmQ6")
            password = base64.b64decode(self.line()).decode()
        self.peer.seen.logins.append((user, password))
        if self.peer.users.get(user) == password:
            self.authed = True
            self.send("235 2.7.0 Authentication successful")
        else:
            self.send("535 5.7.8 Error: authentication failed: authentication failure")
