"""A durable local buffer of Kafka records for when the broker cannot take them.

Records live in append-only segment files ``<seq>.seg`` under one directory, read back oldest
segment first and records in the order they were written. A segment is deleted only when the
caller says every record in it reached the broker (:meth:`Spool.ack`), so a crash at any point
loses nothing that was appended; it may replay a segment twice, which the consumers' dedup
(request_id / event_id) absorbs.

Framing: each record is ``>II`` (payload length, crc32 of the payload) followed by the payload
``>H`` topic length, topic, ``>i`` key length (-1 = no key), key, value. A process killed
mid-write leaves a short or mismatching last frame; reading stops there and everything before
it is intact. A new ``Spool`` never appends to a segment it found on disk (the tail may be
torn), it starts a fresh one.

Durability: every :meth:`Spool.append` call writes its records with one ``write``, flushes to the
OS (survives the process being killed) and, with ``fsync=True``, fsyncs once per call (survives
a power loss). Callers batch records into one call to pay for one fsync.
"""

from __future__ import annotations

import logging
import os
import struct
import threading
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("recast.spool")

HEADER = struct.Struct(">II")  # payload length, crc32(payload)
TOPIC_LEN = struct.Struct(">H")
KEY_LEN = struct.Struct(">i")
MIN_PAYLOAD = TOPIC_LEN.size + KEY_LEN.size
SUFFIX = ".seg"


@dataclass(frozen=True)
class Record:
    topic: str
    key: bytes | None
    value: bytes


@dataclass(frozen=True)
class Segment:
    """One segment's records as read back; pass it to :meth:`Spool.ack` once all were delivered."""

    seq: int
    path: Path
    records: list[Record]


def encode(record: Record) -> bytes:
    topic = record.topic.encode()
    key = b"" if record.key is None else record.key
    payload = b"".join(
        (TOPIC_LEN.pack(len(topic)), topic, KEY_LEN.pack(-1 if record.key is None else len(key)), key, record.value)
    )
    return HEADER.pack(len(payload), zlib.crc32(payload)) + payload


def decode(data: bytes) -> tuple[list[Record], int]:
    """The records of a segment's bytes and the offset where valid data ends (== len(data) unless torn)."""
    records, pos = [], 0
    while pos + HEADER.size <= len(data):
        length, crc = HEADER.unpack_from(data, pos)
        start, end = pos + HEADER.size, pos + HEADER.size + length
        # A torn or corrupt frame (zeros from a crash count: crc32(b"") == 0): nothing after it can be trusted.
        if length < MIN_PAYLOAD or end > len(data) or zlib.crc32(data[start:end]) != crc:
            break
        record = _payload(data[start:end])
        if record is None:
            break
        records.append(record)
        pos = end
    return records, pos


def _payload(payload: bytes) -> Record | None:
    (topic_len,) = TOPIC_LEN.unpack_from(payload, 0)
    at = TOPIC_LEN.size + topic_len
    if at + KEY_LEN.size > len(payload):
        return None
    (key_len,) = KEY_LEN.unpack_from(payload, at)
    at += KEY_LEN.size
    if at + max(key_len, 0) > len(payload):
        return None
    try:
        topic = payload[TOPIC_LEN.size : TOPIC_LEN.size + topic_len].decode()
    except UnicodeDecodeError:
        return None
    key = None if key_len < 0 else payload[at : at + key_len]
    return Record(topic, key, payload[at + max(key_len, 0) :])


def _fsync_dir(directory: Path) -> None:
    # A new or deleted file name is durable only once its directory is synced.
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Spool:
    """Append records, read back the oldest segment, acknowledge it to delete it. Thread-safe."""

    def __init__(self, directory: Path | str, *, segment_bytes: int = 1 << 20, fsync: bool = True):
        if segment_bytes < 1:
            raise ValueError(f"segment_bytes must be >= 1, got {segment_bytes}")
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.segment_bytes, self.fsync = segment_bytes, fsync
        self._lock = threading.Lock()
        self._active = None  # (seq, open file) of the segment appends go to; None until the next append
        self._active_size = 0
        seqs = self._seqs()
        self._next_seq = (seqs[-1] + 1) if seqs else 1
        self._pending = sum(len(self._read(seq)[0]) for seq in seqs)  # what earlier processes left behind

    def _path(self, seq: int) -> Path:
        return self.directory / f"{seq:016d}{SUFFIX}"

    def _seqs(self) -> list[int]:
        return sorted(int(p.stem) for p in self.directory.glob(f"*{SUFFIX}") if p.stem.isdigit())

    def _read(self, seq: int) -> tuple[list[Record], bool]:
        data = self._path(seq).read_bytes()
        records, end = decode(data)
        if end != len(data):
            log.warning("spool segment %s: ignoring %d torn bytes at its end", self._path(seq), len(data) - end)
        return records, end != len(data)

    def append(self, records: Iterable[Record]) -> int:
        """Write ``records`` durably (one write, one flush, one fsync); returns how many."""
        records = list(records)
        if not records:
            return 0
        data = b"".join(encode(r) for r in records)
        with self._lock:
            if self._active is None or self._active_size >= self.segment_bytes:
                self._roll()
            seq, f = self._active
            f.write(data)
            f.flush()
            if self.fsync:
                os.fsync(f.fileno())
            self._active_size += len(data)
            self._pending += len(records)
        return len(records)

    def _roll(self) -> None:
        self._seal()
        seq, self._next_seq = self._next_seq, self._next_seq + 1
        self._active, self._active_size = (seq, self._path(seq).open("ab")), 0
        if self.fsync:
            _fsync_dir(self.directory)

    def _seal(self) -> None:
        if self._active is not None:
            self._active[1].close()
            self._active = None

    def oldest(self) -> Segment | None:
        """The oldest segment's records, or None when nothing is pending. Appends after this call go to
        a newer segment, so acknowledging this one never deletes records it did not return."""
        with self._lock:
            seqs = self._seqs()
            if not seqs:
                self._pending = 0  # files removed behind our back: nothing is left to replay
                return None
            if self._active is not None and self._active[0] == seqs[0]:
                self._seal()
            records, _ = self._read(seqs[0])
            return Segment(seqs[0], self._path(seqs[0]), records)

    def ack(self, segment: Segment) -> None:
        """Every record of ``segment`` reached the broker: delete it."""
        with self._lock:
            if self._active is not None and self._active[0] == segment.seq:
                raise ValueError(f"segment {segment.seq} is being appended to; read it with oldest() first")
            segment.path.unlink(missing_ok=True)
            if self.fsync:
                _fsync_dir(self.directory)
            self._pending = max(0, self._pending - len(segment.records))

    def pending(self) -> int:
        """Records appended and not yet acknowledged (including those of earlier processes)."""
        with self._lock:
            return self._pending

    def close(self) -> None:
        with self._lock:
            self._seal()
