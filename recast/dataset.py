"""Read a data set in the MiniOneRec/ReRe semantic-ID format and validate it.

A data set directory holds ``items.json``, ``sid_index.json``, ``info.txt`` and
one or more interaction CSVs. Nothing here assumes this data set's sizes. Every
problem raises :class:`DatasetError` naming the file, the row (1-based line
number) and what is wrong, because the person fixing it has the file open.

This is one of the two modules in ``recast`` that touch files (the other is
``recast.checkpoint``); both only read and write their own formats.
"""

from __future__ import annotations

import ast
import csv
import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path

from recast.catalog import Catalog, CatalogError, build_catalog, parse_sid

REQUIRED_COLUMNS = ("user_id", "history_item_id", "item_id")


class DatasetError(ValueError):
    """A data set file that cannot be used; ``str()`` is ``path:line: problem``."""

    def __init__(self, path: Path | str, problem: str, line: int | None = None):
        where = f"{path}:{line}" if line is not None else str(path)
        super().__init__(f"{where}: {problem}")
        self.path, self.line, self.problem = Path(path), line, problem


@dataclass(frozen=True)
class Interaction:
    """One row: the user's history (oldest first) and the item that came next."""

    user_id: str
    history: tuple[str, ...]
    target: str


def _read_json_object(path: Path) -> tuple[dict, str]:
    """The parsed object and its text (the text locates an item's line for errors)."""
    if not path.is_file():
        raise DatasetError(path, "file not found")
    text = path.read_text(encoding="utf-8")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DatasetError(path, f"invalid JSON: {exc.msg}", exc.lineno) from None
    if not isinstance(data, dict):
        raise DatasetError(path, "expected a JSON object keyed by item id", 1)
    return data, text


def _key_line(text: str, key: str) -> int | None:
    """1-based line where ``"key":`` first appears in a JSON text, None if not found."""
    match = re.search(rf'(?<!\\)"{re.escape(key)}"\s*:', text)
    return text.count("\n", 0, match.start()) + 1 if match else None


def load_catalog(data_dir: Path | str) -> Catalog:
    """Load ``items.json`` + ``sid_index.json`` (+ ``info.txt`` as a cross-check)."""
    data_dir = Path(data_dir)
    sid_path = data_dir / "sid_index.json"
    titles, brands = {}, {}
    for item_id, entry in load_item_entries(data_dir).items():
        titles[item_id] = entry["title"]
        if isinstance(entry.get("brand"), str):
            brands[item_id] = entry["brand"]
    sids = {}
    raw_sids, sids_text = _read_json_object(sid_path)
    for item_id, tokens in raw_sids.items():
        if not isinstance(tokens, list) or not all(isinstance(t, str) for t in tokens):
            problem = f"item {item_id!r}: expected a list of SID tokens"
            raise DatasetError(sid_path, problem, _key_line(sids_text, item_id))
        try:
            sids[str(item_id)] = parse_sid("".join(tokens))
        except CatalogError as exc:
            raise DatasetError(sid_path, f"item {item_id!r}: {exc}", _key_line(sids_text, item_id)) from None
    try:
        catalog = build_catalog(titles, sids, brands)
    except CatalogError as exc:
        raise DatasetError(sid_path, str(exc)) from None
    info_path = data_dir / "info.txt"
    if info_path.is_file():
        _check_info(info_path, catalog)
    return catalog


def load_item_entries(data_dir: Path | str) -> dict[str, dict]:
    """``items.json`` as item id -> its entry (title, description, brand, categories): the text an item
    tokenizer (``recast.sids``) learns from. Every entry must be an object with a ``title`` string."""
    return read_item_entries(Path(data_dir) / "items.json")


def read_item_entries(path: Path | str) -> dict[str, dict]:
    """A file in the ``items.json`` format (``{item_id: {"title": ...}}``), checked as :func:`load_item_entries`."""
    path = Path(path)
    raw, text = _read_json_object(path)
    for item_id, entry in raw.items():
        if not isinstance(entry, dict) or not isinstance(entry.get("title"), str):
            problem = f"item {item_id!r}: expected an object with a 'title' string"
            raise DatasetError(path, problem, _key_line(text, item_id))
    return {str(i): e for i, e in raw.items()}


def load_categories(data_dir: Path | str) -> dict[str, str]:
    """Item id -> top-level category, from ``items.json``'s ``categories`` (items without one are left out)."""
    from recast.segments import top_category

    raw, _ = _read_json_object(Path(data_dir) / "items.json")
    out = {}
    for item_id, entry in raw.items():
        category = top_category(entry.get("categories")) if isinstance(entry, dict) else None
        if category:
            out[str(item_id)] = category
    return out


def _check_info(path: Path, catalog: Catalog) -> None:
    """``info.txt`` repeats SID and title per item; disagreement means mixed-up files."""
    with path.open(encoding="utf-8") as f:
        for line_no, line in enumerate(f, start=1):
            if not line.strip():
                continue
            parts = line.rstrip("\n").split("\t")
            if len(parts) != 3:
                raise DatasetError(path, f"expected 'SID<TAB>title<TAB>item_id', got {len(parts)} fields", line_no)
            sid, _title, item_id = parts
            if item_id not in catalog.index:
                raise DatasetError(path, f"unknown item id {item_id!r}", line_no)
            try:
                tokens = parse_sid(sid)
            except CatalogError as exc:
                raise DatasetError(path, str(exc), line_no) from None
            if tokens != catalog.items[catalog.index[item_id]].sid:
                raise DatasetError(path, f"item {item_id}: SID {sid} disagrees with sid_index.json", line_no)


def _parse_list(value: str, column: str, path: Path, line: int) -> list:
    try:
        parsed = ast.literal_eval(value)
    except (ValueError, SyntaxError):
        raise DatasetError(path, f"column {column}: unparsable list {value[:80]!r}", line) from None
    if not isinstance(parsed, list | tuple):
        raise DatasetError(path, f"column {column}: expected a list, got {type(parsed).__name__}", line)
    return list(parsed)


def load_interactions(path: Path | str, catalog: Catalog) -> list[Interaction]:
    """Read an interaction CSV in file order; every item id must be in ``catalog``.

    Where the optional ``history_item_sid`` / ``item_sid`` columns are present they
    must agree with the catalog (a mismatch means the CSV belongs to another catalog).
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(path, "file not found")
    rows = []
    with path.open(encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in REQUIRED_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise DatasetError(path, f"missing column(s) {', '.join(missing)}; header is {reader.fieldnames}", 1)
        for row in reader:
            line = reader.line_num
            if any(row.get(c) is None for c in REQUIRED_COLUMNS):
                raise DatasetError(path, "row has fewer fields than the header", line)
            user = row["user_id"].strip()
            if not user:
                raise DatasetError(path, "empty user_id", line)
            history = [str(i).strip() for i in _parse_list(row["history_item_id"], "history_item_id", path, line)]
            target = row["item_id"].strip()
            unknown = catalog.unknown(history + [target])
            if unknown:
                raise DatasetError(path, f"unknown item id(s) {unknown}", line)
            _check_row_sids(row, history, target, catalog, path, line)
            rows.append(Interaction(user_id=user, history=tuple(history), target=target))
    return rows


def _check_row_sids(row: dict, history: list[str], target: str, catalog: Catalog, path: Path, line: int) -> None:
    def expect(item_id: str, text: str, column: str) -> None:
        try:
            tokens = parse_sid(text)
        except CatalogError as exc:
            raise DatasetError(path, f"column {column}: {exc}", line) from None
        if tokens != catalog.items[catalog.index[item_id]].sid:
            raise DatasetError(path, f"column {column}: SID {text} is not item {item_id}'s SID", line)

    if row.get("item_sid"):
        expect(target, row["item_sid"], "item_sid")
    if row.get("history_item_sid"):
        history_sids = _parse_list(row["history_item_sid"], "history_item_sid", path, line)
        if len(history_sids) != len(history):
            raise DatasetError(path, "history_item_sid and history_item_id differ in length", line)
        for item_id, text in zip(history, history_sids):
            expect(item_id, str(text), "history_item_sid")


def fingerprint(paths: list[Path | str]) -> str:
    """sha256 over the given files' bytes, in order: names the exact data a model saw."""
    digest = hashlib.sha256()
    for p in paths:
        digest.update(Path(p).read_bytes())
    return digest.hexdigest()


def write_interactions(source: Path | str, dest: Path | str, keep_rows: set[int]) -> int:
    """Copy the header and the data rows whose 0-based positions are in ``keep_rows``.

    Positions count data rows as ``load_interactions`` returns them (a quoted field
    may span lines, so line numbers would not do). Rows are copied verbatim so a
    split file is a faithful subset of its source.
    """
    source, dest = Path(source), Path(dest)
    kept = 0
    with source.open(encoding="utf-8", newline="") as f, dest.open("w", encoding="utf-8", newline="") as out:
        reader, writer = csv.reader(f), csv.writer(out, lineterminator="\n")
        writer.writerow(next(reader))
        # Blank lines are skipped, as csv.DictReader (load_interactions) skips them,
        # so positions name the same rows in both.
        for position, row in enumerate(row for row in reader if row):
            if position in keep_rows:
                writer.writerow(row)
                kept += 1
    return kept


def write_with_sids(source: Path | str, dest: Path | str, sids: dict[str, tuple[str, ...]]) -> dict[str, int]:
    """Copy the data set in ``source`` to ``dest`` with other SIDs: ``items.json`` verbatim, ``sid_index.json``
    from ``sids`` (every item of ``items.json`` needs one), ``info.txt`` with each line's SID replaced (titles and
    order kept), and every interaction CSV with its ``history_item_sid`` / ``item_sid`` columns rewritten
    (other columns verbatim). Returns the rows written per CSV. The copy loads as the original did.
    """
    source, dest = Path(source), Path(dest)
    if source.resolve() == dest.resolve():
        raise DatasetError(dest, "the copy must go to another directory than its source")
    items = load_item_entries(source)
    missing = sorted(set(items) - set(sids))
    if missing:
        raise DatasetError(source / "items.json", f"{len(missing)} items have no new SID, e.g. {missing[:5]}")
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "items.json").write_bytes((source / "items.json").read_bytes())
    text = {i: "".join(sids[i]) for i in items}
    (dest / "sid_index.json").write_text(json.dumps({i: list(sids[i]) for i in items}), encoding="utf-8")
    if (source / "info.txt").is_file():
        with (source / "info.txt").open(encoding="utf-8") as f, (dest / "info.txt").open("w", encoding="utf-8") as g:
            for line_no, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                parts = line.rstrip("\n").split("\t")
                if len(parts) != 3 or parts[2] not in text:
                    raise DatasetError(source / "info.txt", "expected 'SID<TAB>title<TAB>item_id' of a known item",
                                       line_no)  # fmt: skip
                g.write(f"{text[parts[2]]}\t{parts[1]}\t{parts[2]}\n")
    written = {}
    for csv_path in sorted(source.glob("*.csv")):
        written[csv_path.name] = _rewrite_row_sids(csv_path, dest / csv_path.name, text)
    return written


def _rewrite_row_sids(source: Path, dest: Path, sid_text: dict[str, str]) -> int:
    rows = 0
    with source.open(encoding="utf-8", newline="") as f, dest.open("w", encoding="utf-8", newline="") as out:
        reader = csv.DictReader(f)
        writer = csv.DictWriter(out, fieldnames=reader.fieldnames or [], lineterminator="\n")
        writer.writeheader()
        for row in reader:
            line = reader.line_num
            try:
                if row.get("item_sid"):
                    row["item_sid"] = sid_text[row["item_id"].strip()]
                if row.get("history_item_sid"):
                    history = _parse_list(row["history_item_id"], "history_item_id", source, line)
                    row["history_item_sid"] = str([sid_text[str(i).strip()] for i in history])
            except KeyError as exc:
                raise DatasetError(source, f"unknown item id {exc.args[0]!r}", line) from None
            writer.writerow(row)
            rows += 1
    return rows
