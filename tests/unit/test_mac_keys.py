"""MacKeys: a MAC key read once and kept for keep_seconds; unknown terminals never kept."""

from __future__ import annotations

from host.mac_keys import MacKeys

KEY_A = bytes(range(16))
KEY_B = bytes(range(1, 17))


class Store:
    def __init__(self) -> None:
        self.keys: dict[str, bytes] = {"ATM00001": KEY_A}
        self.reads: list[str] = []

    def __call__(self, terminal_id: str) -> bytes | None:
        self.reads.append(terminal_id)
        return self.keys.get(terminal_id)


def test_a_key_is_read_once_within_keep_seconds_then_read_again() -> None:
    store, now = Store(), [100.0]
    keys = MacKeys(store, keep_seconds=5.0, clock=lambda: now[0])
    assert [keys.key("ATM00001") for _ in range(3)] == [KEY_A] * 3
    assert store.reads == ["ATM00001"]
    store.keys["ATM00001"] = KEY_B
    now[0] += 4.9
    assert keys.key("ATM00001") == KEY_A  # still kept
    now[0] += 0.1
    assert keys.key("ATM00001") == KEY_B
    assert store.reads == ["ATM00001", "ATM00001"]


def test_read_asks_the_store_now_and_keeps_what_it_says() -> None:
    store = Store()
    keys = MacKeys(store, clock=lambda: 0.0)
    assert keys.key("ATM00001") == KEY_A
    store.keys["ATM00001"] = KEY_B
    assert keys.read("ATM00001") == KEY_B
    assert keys.key("ATM00001") == KEY_B
    assert len(store.reads) == 2


def test_an_unknown_terminal_is_asked_every_time_and_a_removed_one_forgotten() -> None:
    store = Store()
    keys = MacKeys(store, clock=lambda: 0.0)
    assert keys.key("ATM00009") is None
    assert keys.key("ATM00009") is None
    assert store.reads == ["ATM00009", "ATM00009"]
    store.keys["ATM00009"] = KEY_B  # added to the bank: seen at its first message
    assert keys.key("ATM00009") == KEY_B
    del store.keys["ATM00001"]
    keys.key("ATM00001")
    assert keys.read("ATM00001") is None
    assert keys.key("ATM00001") is None
    assert store.reads[-2:] == ["ATM00001", "ATM00001"]
