"""Split an IMAP FETCH response into its items, keeping each value's bytes as sent."""

from __future__ import annotations


def _value_end(data: bytes, i: int) -> int:
    """Index after the value that starts at ``i``."""
    c = data[i:i + 1]
    if c == b"{":
        close = data.index(b"}", i)
        n = int(data[i + 1:close].rstrip(b"+"))
        start = close + 3  # "}\r\n"
        return start + n
    if c == b'"':
        j = i + 1
        while data[j:j + 1] != b'"':
            j += 2 if data[j:j + 1] == b"\\" else 1
        return j + 1
    if c == b"(":
        j = i + 1
        while data[j:j + 1] != b")":
            if data[j:j + 1] == b" ":
                j += 1
                continue
            j = _value_end(data, j)
        return j + 1
    j = i
    while j < len(data) and data[j:j + 1] not in (b" ", b")", b"\r"):
        j += 1
    return j


def fetch_items(response: bytes) -> dict[bytes, bytes]:
    """``* N FETCH (name value ...)`` → {name: raw value}."""
    start = response.index(b"FETCH (") + len(b"FETCH (")
    items: dict[bytes, bytes] = {}
    i = start
    while response[i:i + 1] != b")":
        if response[i:i + 1] == b" ":
            i += 1
            continue
        j = i
        depth = 0
        while True:
            c = response[j:j + 1]
            if c == b"[":
                depth += 1
            elif c == b"]":
                depth -= 1
            elif c == b" " and depth == 0:
                break
            j += 1
        name = response[i:j]
        end = _value_end(response, j + 1)
        items[name] = response[j + 1:end]
        i = end
    return items


def all_fetches(output: bytes) -> list[dict[bytes, bytes]]:
    """Every ``* N FETCH`` response in a session transcript."""
    out: list[dict[bytes, bytes]] = []
    pos = 0
    while True:
        k = output.find(b"* 1 FETCH (", pos)
        if k < 0:
            return out
        items = fetch_items(output[k:])
        out.append(items)
        pos = k + 1
