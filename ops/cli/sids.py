"""``recast sids``: the project's own item tokenizer (issue 16): fit it, give codes to new items, measure it.

    recast sids fit --data data/amazon18-industrial --out runs/sids/tok --write-data runs/sids/data
    recast sids assign --tokenizer runs/sids/tok --items new_items.json [--data runs/sids/data] [--out FILE]
    recast sids measure --data data/amazon18-industrial --learnt runs/sids/tok/sid_index.json --tokenizer runs/sids/tok

The pure parts are ``recast.sids``; the measurement is ``ops.experiments.sids``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import typer

from ops.cli.console import fail, setup
from schemas.settings import get_settings

sids_app = typer.Typer(
    help="The project's own semantic IDs: residual k-means over item text (title, brand, description) learnt from "
    "items.json. 'fit' learns them for a catalog, 'assign' codes new items without changing any existing code, "
    "'measure' compares them with the shipped SIDs.",
    no_args_is_help=True,
)

DataOpt = Annotated[Path | None, typer.Option("--data", help="Data set directory (default: $RECAST_DATA_DIR).")]


def _codebook_sizes(spec: str | None, levels: int, data: Path) -> tuple[int, ...]:
    """``--codebook-size``: one size for every level, one per level (comma-separated), or (None) what the data
    set's own ``sid_index.json`` uses per level when it has ``levels`` levels, else 256."""
    if spec is None:
        index = data / "sid_index.json"
        if index.is_file():
            try:
                shipped = json.loads(index.read_text(encoding="utf-8"))
                depths = {len(tokens) for tokens in shipped.values()}
            except (ValueError, TypeError, AttributeError):
                depths = set()
            if depths == {levels}:
                return tuple(len({tokens[level] for tokens in shipped.values()}) for level in range(levels))
        return (256,) * levels
    try:
        sizes = tuple(int(part) for part in spec.split(","))
    except ValueError:
        fail(f"--codebook-size: expected an integer or comma-separated integers, got {spec!r}")
    if len(sizes) == 1:
        return sizes * levels
    if len(sizes) != levels:
        fail(f"--codebook-size gives {len(sizes)} sizes for {levels} levels (give one, or one per level)")
    return sizes


@sids_app.command()
def fit(
    out: Annotated[Path, typer.Option(help="Directory for the tokenizer (and sid_index.json, the catalog's SIDs).")],
    data: DataOpt = None,
    levels: Annotated[int, typer.Option(help="SID levels (the catalog adds a disambiguation level).")] = 3,
    codebook_size: Annotated[
        str | None,
        typer.Option(help="Codewords per level: one number, or one per level ('48,256,256'). Default: as many as "
                     "the data set's own sid_index.json uses per level (48, 256, 256 shipped), else 256."),
    ] = None,  # fmt: skip
    dim: Annotated[int, typer.Option(help="Dense text dimension (SVD directions of the TF-IDF matrix).")] = 128,
    iterations: Annotated[int, typer.Option(help="k-means steps per level at most.")] = 50,
    min_df: Annotated[int, typer.Option(help="A word must occur in this many items to count.")] = 2,
    seed: Annotated[int, typer.Option(help="Seed of the SVD and k-means; the same seed gives the same codes.")] = 0,
    spread: Annotated[
        bool, typer.Option(help="Move colliding items to free last-level codewords (--no-spread: keep collisions).")
    ] = True,
    write_data: Annotated[
        Path | None,
        typer.Option(help="Also write a copy of --data that uses these SIDs (sid_index.json, info.txt and the CSVs' "
                     "SID columns rewritten): 'recast split/train/eval --data' it to train on them."),
    ] = None,  # fmt: skip
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Learn an item tokenizer from a catalog's items.json and write it, with the catalog's SIDs, to --out."""
    from tqdm.auto import tqdm

    from recast.dataset import DatasetError, load_catalog, load_interactions, load_item_entries, write_with_sids
    from recast.sids.store import save_tokenizer
    from recast.sids.tokenizer import ItemTokenizer, SidConfig

    setup(get_settings().torch_threads)
    data = data or get_settings().data_dir
    if write_data is not None and write_data.resolve() == data.resolve():
        fail("--write-data must be another directory than --data (it would overwrite the shipped SIDs)")
    sizes = _codebook_sizes(codebook_size, levels, data)
    started = time.monotonic()
    try:
        config = SidConfig(codebook_sizes=sizes, dim=dim, min_df=min_df, iterations=iterations, seed=seed,
                           spread_collisions=spread)  # fmt: skip
        entries = load_item_entries(data)
        with tqdm(total=len(sizes) * iterations, desc="k-means", unit="step", disable=not progress) as bar:
            tokenizer = ItemTokenizer.fit(entries, config, on_iteration=lambda: bar.update(1))
    except (DatasetError, ValueError) as exc:
        fail(str(exc))
    save_tokenizer(tokenizer, out)
    per_sid: dict[tuple[str, ...], int] = {}
    for sid in tokenizer.fitted.values():
        per_sid[sid] = per_sid.get(sid, 0) + 1
    encoded = tokenizer.encode(entries)
    summary = {
        "tokenizer": str(out),
        "sid_index": str(out / "sid_index.json"),
        "items": len(entries),
        "codebook_sizes": list(sizes),
        "vocabulary": len(tokenizer.featurizer.vocab),
        "distinct_sids": len(per_sid),
        "shared_sids": sum(1 for n in per_sid.values() if n > 1),
        "max_items_per_sid": max(per_sid.values()),
        "moved_off_collisions": sum(1 for i, sid in tokenizer.fitted.items() if encoded[i] != sid),
        "seconds": round(time.monotonic() - started, 1),
    }
    if write_data is not None:
        try:
            summary["data_rows"] = write_with_sids(data, write_data, tokenizer.fitted)
            catalog = load_catalog(write_data)  # what a training run on it reads first, checked now
            for name in summary["data_rows"]:
                load_interactions(write_data / name, catalog)
        except DatasetError as exc:
            fail(str(exc))
        (write_data / "README.md").write_text(
            f"A copy of `{data}` whose SIDs are the project's own, from `recast sids fit` (tokenizer: `{out}`; "
            f"config: `{json.dumps(config.to_dict(), sort_keys=True)}`). items.json is unchanged.\n",
            encoding="utf-8",
        )
        summary["data"] = str(write_data)
    typer.echo(json.dumps(summary, indent=2))


@sids_app.command()
def assign(
    tokenizer_dir: Annotated[Path, typer.Option("--tokenizer", help="Directory from 'recast sids fit'.")],
    items: Annotated[Path, typer.Option(help="New items in the items.json format: {item_id: {title, ...}}.")],
    data: Annotated[
        Path | None,
        typer.Option(help="Data set whose sid_index.json holds the existing SIDs (default: the tokenizer's own "
                     "fitted catalog)."),
    ] = None,  # fmt: skip
    out: Annotated[
        Path | None,
        typer.Option(help="Write the existing SIDs plus the new items' here, as a sid_index.json. A catalog rebuilt "
                     "from it numbers <d_n> by item id: see 'renumbered_if_rebuilt' in the output."),
    ] = None,  # fmt: skip
) -> None:
    """Give SIDs to new items; no existing item's SID changes.

    Prints, per new item, its SID, the code a catalog extended with it gives it (recast.catalog.extend_catalog:
    the next free disambiguation index of its SID) and the existing items it shares its SID with. Items
    already among the existing ones keep their SID and are listed under "kept". "renumbered_if_rebuilt" lists
    the existing items whose disambiguation token a catalog rebuilt from the merged SIDs would change (a new
    item with a lower id joined their SID): a model trained before must be served the extended codes."""
    from recast.catalog import CatalogError, build_catalog, extend_catalog, sid_text
    from recast.dataset import DatasetError, load_catalog, read_item_entries
    from recast.sids.store import TokenizerFileError, load_tokenizer

    setup()
    try:
        tokenizer = load_tokenizer(tokenizer_dir)
        new = read_item_entries(items)
        if not new:
            fail(f"{items} holds no items")
        if data is not None:
            catalog = load_catalog(data)
        else:
            catalog = build_catalog({i: "" for i in tokenizer.fitted}, tokenizer.fitted)
        existing = {item.item_id: item.sid for item in catalog.items}
        merged = tokenizer.assign(new, existing)
    except (TokenizerFileError, DatasetError, CatalogError, ValueError) as exc:
        fail(str(exc))
    kept = sorted(i for i in new if i in existing)
    fresh = {i: merged[i] for i in new if i not in existing}
    extended = extend_catalog(catalog, {i: new[i]["title"] for i in fresh}, fresh) if fresh else catalog
    rebuilt_catalog = build_catalog({i: "" for i in merged}, merged)
    rebuilt = {item.item_id: item.code for item in rebuilt_catalog.items}
    holders: dict[tuple[str, ...], list[str]] = {}
    for item in catalog.items:
        holders.setdefault(item.sid, []).append(item.item_id)
    report = {
        "items": {
            i: {"sid": sid_text(sid), "code": list(extended.items[extended.index[i]].code),
                "shares_sid_with": holders.get(sid, [])}
            for i, sid in fresh.items()
        },
        "kept": kept,
        "renumbered_if_rebuilt": [item.item_id for item in catalog.items if item.code != rebuilt[item.item_id]],
    }  # fmt: skip
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({i: list(sid) for i, sid in merged.items()}) + "\n", encoding="utf-8")
        report["written"] = str(out)
    typer.echo(json.dumps(report, indent=2))


@sids_app.command()
def measure(
    learnt: Annotated[Path, typer.Option(help="The learnt sid_index.json (from 'recast sids fit').")],
    data: DataOpt = None,
    tokenizer_dir: Annotated[
        Path | None, typer.Option("--tokenizer", help="The tokenizer directory: adds its text space.")
    ] = None,
    k: Annotated[int, typer.Option(help="Nearest neighbours per item.")] = 10,
    json_out: Annotated[Path | None, typer.Option("--json", help="Also write the figures here.")] = None,
) -> None:
    """Compare learnt SIDs with the data set's own: prefix agreement among each item's text neighbours,
    first-level ARI/NMI, collisions and codebook usage (ops.experiments.sids)."""
    from ops.experiments.sids import measure as run_measure
    from ops.experiments.sids import table
    from recast.dataset import DatasetError
    from recast.sids.store import TokenizerFileError

    setup(get_settings().torch_threads)
    if k < 1:
        fail(f"--k must be >= 1, got {k}")
    try:
        report = run_measure(data or get_settings().data_dir, learnt, tokenizer_dir, k)
    except (DatasetError, TokenizerFileError, ValueError, OSError) as exc:
        fail(str(exc))
    typer.echo(table(report))
    if json_out is not None:
        json_out.write_text(json.dumps(report, indent=2) + "\n")


def register(app: typer.Typer) -> None:
    app.add_typer(sids_app, name="sids")
