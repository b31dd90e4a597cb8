"""The spool on a real directory: round trip, torn tails, restarts and acknowledgement."""

from __future__ import annotations

import os

from serving.spool import HEADER, Record, Spool


def records(n: int, start: int = 0) -> list[Record]:
    # Keys None and b"" must stay distinct; values are arbitrary bytes, not text.
    return [
        Record("t.a" if i % 2 else "t.b", None if i % 5 == 0 else str(i).encode(), bytes([i % 256]) * i)
        for i in range(start, start + n)
    ]


def read_all(spool: Spool) -> list[Record]:
    out = []
    while (segment := spool.oldest()) is not None:
        out += segment.records
        spool.ack(segment)
    return out


def test_round_trip_keeps_order_and_bytes(tmp_path):
    spool = Spool(tmp_path, segment_bytes=200)  # small segments: several files, order across them
    expected = records(30) + [Record("t", b"", b"")]
    for i in range(0, len(expected), 7):
        spool.append(expected[i : i + 7])
    assert spool.pending() == len(expected)
    assert len(list(tmp_path.glob("*.seg"))) > 1
    assert read_all(spool) == expected
    assert spool.pending() == 0


def test_torn_tail_is_ignored_and_earlier_records_survive(tmp_path):
    spool = Spool(tmp_path)
    spool.append(records(5))
    spool.append([Record("t", b"k", b"x" * 100)])
    spool.close()
    (segment,) = tmp_path.glob("*.seg")
    intact = segment.stat().st_size - HEADER.size - 1 - 100 - 2 - 4  # where the last frame starts
    # Cut the last frame in the middle of its payload, then inside its header; then zeros (a crash
    # can leave a file longer than the data that reached the disk).
    for cut in (intact + HEADER.size + 50, intact + 3, intact + 64):
        os.truncate(segment, cut)
        reopened = Spool(tmp_path)
        assert reopened.pending() == 5
        assert reopened.oldest().records == records(5)
        reopened.close()


def test_corrupt_frame_stops_reading_that_segment(tmp_path):
    spool = Spool(tmp_path)
    spool.append(records(3))
    spool.close()
    (segment,) = tmp_path.glob("*.seg")
    data = bytearray(segment.read_bytes())
    data[-1] ^= 0xFF  # the last record's payload no longer matches its crc
    segment.write_bytes(bytes(data))
    assert Spool(tmp_path).oldest().records == records(2)


def test_new_spool_sees_pending_and_appends_to_a_new_segment(tmp_path):
    first = Spool(tmp_path)
    first.append(records(4))
    first.close()
    second = Spool(tmp_path)
    assert second.pending() == 4
    second.append(records(2, start=4))
    assert len(list(tmp_path.glob("*.seg"))) == 2  # never appends after a possibly torn tail
    assert second.pending() == 6
    assert read_all(second) == records(6)


def test_acknowledged_segments_are_removed_and_unacknowledged_stay(tmp_path):
    spool = Spool(tmp_path)
    spool.append(records(3))
    segment = spool.oldest()
    spool.append(records(2, start=3))  # after oldest(): goes to a newer segment
    spool.ack(segment)
    assert not segment.path.exists()
    assert spool.pending() == 2
    assert [p.name for p in tmp_path.glob("*.seg")] != []
    later = spool.oldest()  # not acknowledged: a restart sees it again
    spool.close()
    assert later.records == records(2, start=3)
    assert Spool(tmp_path).pending() == 2
