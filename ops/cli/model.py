"""``recast split``, ``recast train`` and ``recast eval``: the offline path from data to a measured checkpoint."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Annotated

import typer

from ops.cli.console import fail, setup
from schemas.settings import get_settings

DataOpt = Annotated[Path | None, typer.Option("--data", help="Data set directory (default: $RECAST_DATA_DIR).")]


def _setup(log_file: Path | None = None) -> None:
    setup(get_settings().torch_threads, log_file=log_file)


def split(
    data: DataOpt = None,
    source: Annotated[
        str, typer.Option(help="Interaction CSV to split: a file inside --data, or a path (an earlier split's file).")
    ] = "valid.csv",
    holdout: Annotated[
        float, typer.Option(help="Share of *users* held out (never a share of rows: rows leak).")
    ] = 0.15,
    seed: Annotated[int, typer.Option(help="Seed of the user hash; the same seed gives the same split.")] = 0,
    out: Annotated[Path, typer.Option(help="Directory for train.csv, heldout.csv and split.json.")] = Path(
        "runs/split"
    ),
) -> None:
    """Split an interaction CSV by user into train.csv and heldout.csv.

    Every row of a held-out user goes to heldout.csv, so no target of an evaluated
    user is ever seen in training (a user's later rows contain earlier targets).
    """
    from recast.dataset import DatasetError, load_catalog, load_interactions, write_interactions
    from recast.windows import split_users

    data = data or get_settings().data_dir
    path = Path(source) if Path(source).is_file() else data / source
    try:
        catalog = load_catalog(data)
        rows = load_interactions(path, catalog)
        held = split_users([r.user_id for r in rows], holdout, seed)
    except (DatasetError, ValueError) as exc:
        fail(str(exc))
    out.mkdir(parents=True, exist_ok=True)
    n_train = write_interactions(
        path, out / "train.csv", {i for i, r in enumerate(rows) if r.user_id not in held}
    )
    n_held = write_interactions(
        path, out / "heldout.csv", {i for i, r in enumerate(rows) if r.user_id in held}
    )
    summary = {
        "source": str(path),
        "holdout_users": len(held),
        "users": len({r.user_id for r in rows}),
        "train_rows": n_train,
        "heldout_rows": n_held,
        "seed": seed,
        "holdout": holdout,
        "by": "user",
    }
    (out / "split.json").write_text(json.dumps(summary, indent=2) + "\n")
    typer.echo(json.dumps(summary, indent=2))


def train(
    train_file: Annotated[
        Path,
        typer.Option("--train", help="Interaction CSV; every row and the windows in its histories are trained on."),
    ],
    out: Annotated[Path, typer.Option(help="Checkpoint directory to write (resumes if a run there was interrupted).")],
    data: DataOpt = None,
    preset: Annotated[
        str, typer.Option(help="Training preset: 'tiny' (seconds, tests), 'default' (minutes, demo and "
                    "service: one-item prompts, distilled from the scorers), 'last-item' (the same, no teacher) "
                    "or 'long-context' (the former default: ten-item prompts).")
    ] = "default",
    epochs: Annotated[int | None, typer.Option(help="Override the preset's epoch count.")] = None,
    seed: Annotated[int | None, typer.Option(help="Override the preset's seed.")] = None,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
    log_file: Annotated[
        Path | None, typer.Option(help="Write the INFO log (one line per epoch) here; the terminal keeps warnings.")
    ] = None,
) -> None:
    """Train the SFT policy (next-item prediction) and write a checkpoint."""
    from learner.sft_trainer import train_sft
    from recast.dataset import DatasetError
    from recast.sft import preset as get_preset

    _setup(log_file)
    data = data or get_settings().data_dir
    try:
        config = get_preset(preset)
        overrides = {k: v for k, v in {"epochs": epochs, "seed": seed}.items() if v is not None}
        config = replace(config, **overrides)
        result = train_sft(data, train_file, config, out, progress=progress)
    except (DatasetError, ValueError) as exc:
        fail(str(exc))
    typer.echo(
        json.dumps(
            {
                "checkpoint": str(result.checkpoint),
                "seconds": round(result.seconds, 1),
                "parameters": result.num_parameters,
                "windows": result.num_windows,
                "final_loss": round(result.losses[-1], 4),
            },
            indent=2,
        )
    )


def eval_(
    split_file: Annotated[
        Path, typer.Option("--split", help="Interaction CSV to evaluate on (each row: history -> target).")
    ],
    checkpoint: Annotated[Path, typer.Option(help="Checkpoint directory from 'recast train'.")],
    data: DataOpt = None,
    predictions: Annotated[
        Path | None,
        typer.Option(help="Write one JSON line per row: {'row': i, 'items': [served item ids, best first]}."),
    ] = None,
    report: Annotated[
        Path | None, typer.Option(help="Where to write the JSON report (default: <checkpoint>-eval-<split>.json beside "
                                 "it).")
    ] = None,
    beams: Annotated[int | None, typer.Option(help="Beam width (default: $RECAST_BEAM_WIDTH, 50).")] = None,
    batch_size: Annotated[int, typer.Option(help="Histories decoded together.")] = 64,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Evaluate a checkpoint: HR@K and NDCG@K (K = 1, 3, 5, 10) and Pass@1 for the policy
    alone, the served (fused) ranking, popularity and the item-to-item transition model."""
    from tqdm.auto import tqdm

    from recast.checkpoint import CheckpointError, load_checkpoint, update_manifest
    from recast.dataset import DatasetError, fingerprint, load_catalog, load_interactions
    from recast.evaluation import evaluate
    from serving.served_model import served_recommender

    _setup()
    settings = get_settings()
    data = data or settings.data_dir
    try:
        catalog = load_catalog(data)
        rows = load_interactions(split_file, catalog)
        ckpt = load_checkpoint(checkpoint)
        # What the service would serve under these settings (an invalid mix is a ValueError, reported).
        recommender = served_recommender(ckpt, settings.model_copy(update={"beam_width": beams or settings.beam_width}))
    except (DatasetError, CheckpointError, ValueError) as exc:
        fail(str(exc))
    if ckpt.item_ids != [item.item_id for item in catalog.items]:
        fail(f"{checkpoint} was trained on another catalog than {data}")
    histories = [[catalog.index[i] for i in r.history] for r in rows]
    targets = [catalog.index[r.target] for r in rows]
    with tqdm(total=len(rows), desc="eval", unit="row", disable=not progress) as bar:
        result = evaluate(recommender, histories, targets, batch_size=batch_size, on_batch=bar.update)
    out = {
        "split": str(split_file),
        "split_fingerprint": fingerprint([split_file]),
        "checkpoint": str(checkpoint),
        "model_version": ckpt.version,
        **result.report,
    }
    # Beside the checkpoint, not in it: its manifest lists every file of the directory, and a new one would make
    # the checkpoint fail verification.
    report = report or checkpoint.parent / f"{checkpoint.name}-eval-{split_file.stem}.json"
    report.write_text(json.dumps(out, indent=2) + "\n")
    update_manifest(
        checkpoint,
        "metrics",
        {
            **ckpt.manifest.get("metrics", {}),
            f"eval:{split_file.name}": {"policy": result.report["policy"], "served": result.report["served"]},
        },
    )
    if predictions is not None:
        with predictions.open("w") as f:
            for i, ranking in enumerate(result.served):
                f.write(json.dumps({"row": i, "items": [ckpt.item_ids[p] for p in ranking]}) + "\n")
    typer.echo(json.dumps(out, indent=2))


def register(app: typer.Typer) -> None:
    app.command()(split)
    app.command()(train)
    app.command("eval")(eval_)
