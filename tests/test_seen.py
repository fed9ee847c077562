"""tap_kapwork.seen: the newest version of each id wins, in little memory."""

from __future__ import annotations

import datetime as dt
import random
import tracemalloc

from tap_kapwork.seen import SeenIds

UTC = dt.timezone.utc
START = dt.datetime(2026, 1, 1, tzinfo=UTC)


def at(milliseconds: int) -> dt.datetime:
    return START + dt.timedelta(milliseconds=milliseconds)


def test_the_newest_version_wins_for_every_form_of_id():
    """Against a dict of the ids as they are: documented ids (both prefixes, the same
    digits under the other prefix), and ids that look alike but are other ids (capitals,
    digits only, not hex, too short, spaces, non-ASCII digits), each seen many times."""
    rng = random.Random(4)
    digits = [f"{rng.getrandbits(128):032x}" for _ in range(300)]
    ids = [f"rcv_{d}" for d in digits] + [f"rec_{d}" for d in digits[:100]]
    ids += [f"rcv_{d.upper()}" for d in digits[:20]] + [f"RCV_{d}" for d in digits[:5]]
    ids += [f"rcv_{'1' * 32}", f"rcv_{'0' * 32}", f"rcv_{'g' * 32}", f"rcv_{digits[0][:31]}"]
    ids += [f"rcv_{digits[1][:30]} 1", f"rcv_{'٣' * 32}", f"rcv_{digits[2]}0", "42", "x"]
    ids += [f"rcv_{digits[3][:2]} {digits[3][3:]}"]  # fromhex would read it as 15 bytes
    seen, reference = SeenIds(), {}
    for _ in range(20_000):
        row_id = rng.choice(ids)
        moment = at(rng.randrange(50))
        known = reference.get(row_id)
        expected = known is None or moment > known
        if expected:
            reference[row_id] = moment
        assert seen.newer(row_id, moment) is expected, row_id
    assert len(seen) == len(reference) == len(set(ids))


def test_an_offset_spelling_of_the_same_instant_is_not_newer():
    seen = SeenIds()
    row_id = f"rcv_{'ab' * 16}"
    assert seen.newer(row_id, dt.datetime(2026, 1, 1, 12, tzinfo=UTC))
    same = dt.datetime(2026, 1, 1, 7, tzinfo=dt.timezone(dt.timedelta(hours=-5)))
    assert not seen.newer(row_id, same)
    assert seen.newer(row_id, same + dt.timedelta(microseconds=1))


def test_an_id_spelled_by_the_end_of_one_id_and_the_start_of_the_next_is_new():
    """Packed ids sit end to end in a bucket, which their last two bytes choose: here
    the bytes of `b` appear across `a` and `c`, three ids of one bucket."""
    x = 0x77
    a = bytes([*range(14), x, x])
    for shift in range(1, 16):
        c = bytearray(range(100, 116))
        c[max(0, shift - 2) : shift] = bytes([x]) * min(2, shift)
        c[14:16] = bytes([x, x])
        b = a[shift:] + c[:shift]
        assert b[14:] == a[14:] == c[14:]
        seen = SeenIds()
        assert seen.newer("rcv_" + a.hex(), at(5))
        assert seen.newer("rcv_" + c.hex(), at(5))
        assert seen.newer("rcv_" + b.hex(), at(1)), shift
        assert not seen.newer("rcv_" + b.hex(), at(1))
        assert len(seen) == 3


def test_documented_ids_take_about_24_bytes_each():
    """The one part of the tap's memory that grows with the portfolio (a million ids as
    a dict of strings: ~150 MB). The ids are made inside the measured stretch, as the
    tap decodes them from pages, so that whatever keeps them alive is counted."""
    rng = random.Random(2)
    count = 200_000
    tracemalloc.start()
    try:
        seen = SeenIds()
        for _ in range(count):
            prefix = "rec_" if rng.random() < 0.1 else "rcv_"
            seen.newer(f"{prefix}{rng.getrandbits(128):032x}", at(rng.randrange(10**9)))
        held = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert len(seen) == count
    assert held < 4_000_000 + 30 * count  # the buckets themselves, then ~24 bytes an id
