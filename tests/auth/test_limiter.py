"""Failed-login limiting per client address, on a controlled clock (no sleeping)."""

from __future__ import annotations

from mailhorn.auth.limiter import Limiter, client_key


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_penalty_doubles_up_to_the_cap() -> None:
    limiter = Limiter(delay=2, cap=15, limit=0, clock=Clock())
    delays = []
    for _ in range(6):
        delays.append(limiter.check("127.0.0.2").delay)
        limiter.record_failure("127.0.0.2")
    assert delays == [0, 2, 4, 8, 15, 15]
    assert limiter.check("127.0.0.3").delay == 0  # other clients are not affected
    assert limiter.failures("127.0.0.2") == 6


def test_refusal_after_limit_within_window_and_recovery() -> None:
    clock = Clock()
    limiter = Limiter(delay=0, limit=3, window=60, clock=clock)
    for _ in range(3):
        assert not limiter.check("127.0.0.2").refused
        limiter.record_failure("127.0.0.2")
        clock.now += 10
    verdict = limiter.check("127.0.0.2")
    assert verdict.refused and verdict.failures == 3 and verdict.delay == 0
    clock.now += 31  # the first failure (t=1000) left the 60 s window
    assert limiter.failures("127.0.0.2") == 2
    assert not limiter.check("127.0.0.2").refused
    clock.now += 3600
    assert limiter.failures("127.0.0.2") == 0


def test_success_clears_the_count() -> None:
    limiter = Limiter(delay=1, limit=2, clock=Clock())
    limiter.record_failure("127.0.0.2")
    limiter.record_success("127.0.0.2")
    assert limiter.check("127.0.0.2").delay == 0 and limiter.failures("127.0.0.2") == 0


def test_ipv6_counted_by_64_and_mapped_ipv4() -> None:
    assert client_key("2001:db8:1:2:3:4:5:6") == client_key("2001:db8:1:2::ffff") == "2001:db8:1:2::/64"
    assert client_key("::ffff:127.0.0.2") == "127.0.0.2"
    limiter = Limiter(limit=2, clock=Clock())
    limiter.record_failure("2001:db8:1:2::1")
    limiter.record_failure("2001:db8:1:2::2")
    assert limiter.check("2001:db8:1:2::3").refused
    assert not limiter.check("2001:db8:1:3::1").refused


def test_memory_bounded() -> None:
    limiter = Limiter(limit=5, max_clients=100, clock=Clock())
    for i in range(1000):
        limiter.record_failure(f"10.0.{i // 256}.{i % 256}")
    assert limiter.failures("10.0.0.0") == 0  # forgotten, oldest first
    assert limiter.failures("10.0.3.231") == 1
