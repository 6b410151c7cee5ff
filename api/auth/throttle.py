"""Sign-in throttling: exponential backoff per account and per client address, in memory.

Each failed password sign-in counts against the account name and against the address it came
from. Below a free allowance nothing happens; from then on every further failure doubles the
time before the next attempt is even checked (1 s, 2 s, 4 s … up to a cap), so guessing a
password costs hours instead of seconds. While a key waits, the right password is refused too:
otherwise the wait would tell an attacker nothing was wrong with his last guess.

Addresses get a larger allowance than accounts because many people can sit behind one NAT or
reverse proxy. A successful sign-in clears the account's failures; failures are forgotten after
`forget_after` seconds of quiet. The table is bounded (`max_entries`), oldest entries first out.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(slots=True)
class _Failures:
    count: int
    last: float


class LoginThrottle:
    def __init__(
        self,
        *,
        account_allowance: int = 5,
        address_allowance: int = 20,
        base_delay: float = 1.0,
        max_delay: float = 900.0,
        forget_after: float = 3600.0,
        max_entries: int = 10000,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.account_allowance = account_allowance
        self.address_allowance = address_allowance
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.forget_after = forget_after
        self.max_entries = max_entries
        self._clock = clock
        self._failures: OrderedDict[str, _Failures] = OrderedDict()

    def retry_after(self, account: str, address: str | None) -> float:
        """Seconds before this account may try again from this address (0: go ahead)."""
        now = self._clock()
        waits = [self._wait(_account_key(account), self.account_allowance, now)]
        if address:
            waits.append(self._wait(_address_key(address), self.address_allowance, now))
        return max(waits)

    def failed(self, account: str, address: str | None) -> None:
        now = self._clock()
        for key in (_account_key(account), _address_key(address) if address else None):
            if key is None:
                continue
            entry = self._failures.pop(key, None)
            if entry is None or now - entry.last > self.forget_after:
                entry = _Failures(0, now)
            entry.count += 1
            entry.last = now
            self._failures[key] = entry  # most recent last
        while len(self._failures) > self.max_entries:
            self._failures.popitem(last=False)

    def succeeded(self, account: str) -> None:
        self._failures.pop(_account_key(account), None)

    def _wait(self, key: str, allowance: int, now: float) -> float:
        entry = self._failures.get(key)
        if entry is None or entry.count < allowance:
            return 0.0
        if now - entry.last > self.forget_after:
            del self._failures[key]
            return 0.0
        delay = min(self.base_delay * 2 ** (entry.count - allowance), self.max_delay)
        return max(0.0, entry.last + delay - now)


def _account_key(account: str) -> str:
    return "account:" + account.strip().lower()


def _address_key(address: str) -> str:
    return "address:" + address
