"""Cold start through the API: the cold-start experiment rerun on a running service, over real HTTP.

The experiment's held-out items are added with ``POST /v1/admin/items`` and its held-out users' rows asked of
``POST /v1/recommend``. :mod:`ops.experiments.coldstart` adds the items the way the add route does, in process,
and scores every variant it tries; this reruns its served variant on the product path itself, for the seeds it
trained (``--out/seed-N/ckpt``), and checks that both paths agree row by row. For each seed:

1. ``recast serve`` over the seed's base data set and trained checkpoint (torch engine, beam 20, catalog versions
   in a database of its own on an embedded stack: Postgres and Kafka under ``--out/api-stack``);
2. *before*: the warm rows, and the mixed rows with the items the catalog does not hold yet left out of their
   histories, each a request for a top 10;
3. the held-out items posted in the order the coder takes them (``id_order``), 100 a request, with their
   ``items.json`` entry as it is (title, description, brand, categories: text only); every answer must say the
   reloaded model serves them;
4. *after*: the cold, warm and mixed rows again, whole histories;
5. the target's place in each answer against the rank ``ranks.json`` recorded for the served variant, and the
   codes the API gave against the experiment's own (``ServedCoder`` over the base catalog). The API codes each
   request's items against the catalog the earlier requests grew, so past the first hundred some codes differ,
   and with them some ranks after adding; before adding, and for one request's worth of items, every row agrees
   (``tests/ops/experiments/test_coldstart_api.py``).

The figures (``--out/api.json``) are then the API's own: HR@10 / NDCG@10 on cold, warm, mixed and all rows, the
served ranking against the text scorer on cold rows, and after against before on all rows, with paired
bootstrap intervals pooled over the seeds. Run it after the experiment, on the same ``--out``:

    python -m ops.experiments.coldstart --out runs/coldstart-default2 --seeds 0,1,2,3 --codes used --factors 0 \
        --neighbours 1 --impute 0
    python -m ops.experiments.coldstart_api --out runs/coldstart-default2 --seeds 0,1,2,3
"""

from __future__ import annotations

import argparse
import json
import logging
import secrets
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from ops.experiments.coldstart import K, hits, interval, partition, split, summary, variant_name

log = logging.getLogger("coldstart_api")
SERVED = variant_name("used", 0.0, 1, 0.0)  # the experiment's variant that serving runs (no borrowing, no probe)


@dataclass
class Rows:
    """A seed's held-out users' rows as (history, target) item ids, in the experiment's order
    (:func:`ops.experiments.coldstart.partition`)."""

    cold: list[tuple[list[str], str]]
    warm: list[tuple[list[str], str]]
    mixed: list[tuple[list[str], str]]


def held_out_rows(data: Path, held_items: set[str], held_users: set[str]) -> Rows:
    from recast.dataset import load_catalog, load_interactions

    rows = [r for r in load_interactions(data / "valid.csv", load_catalog(data)) if r.user_id in held_users]
    return Rows(*([(list(r.history), r.target) for r in part] for part in partition(rows, held_items)))


def new_item(item_id: str, entry: dict) -> dict:
    """The add route's payload for an ``items.json`` entry: the entry as it is, its text and nothing else."""
    return {"item_id": item_id, **entry}


class Service:
    """One ``recast serve`` process over a seed's base data set and checkpoint, and an HTTP client for it."""

    def __init__(self, env: dict[str, str], checkpoint: Path, log_path: Path, concurrency: int):
        import httpx

        from ops.sim.processes import start_api, stop, wait_ready
        from serving.auth import digest

        self.key, admin = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
        env = {**env, "RECAST_API_KEYS": digest(self.key), "RECAST_ADMIN_TOKEN_SHA256": digest(admin)}
        self.proc, url = start_api(env, log_path, checkpoint)
        try:
            self.ready_s = wait_ready(url, self.proc)
        except Exception:
            stop(self.proc)  # a service that never got ready is not left running
            raise
        self.client = httpx.Client(base_url=url, timeout=120,
                                   limits=httpx.Limits(max_connections=concurrency))  # fmt: skip
        self.admin = {"Authorization": f"Bearer {admin}"}
        self.concurrency = concurrency

    def ranks(self, rows: list[tuple[list[str], str]], user: str, what: str) -> list[int | None]:
        """The 0-based place of each row's target in the service's top 10 for its history (None: not listed)."""
        from tqdm.auto import tqdm

        def one(row: tuple[list[str], str]) -> int | None:
            history, target = row
            answer = self.client.post("/v1/recommend", json={"user_id": user, "history": history, "k": K},
                                      headers={"Authorization": f"Bearer {self.key}"})  # fmt: skip
            answer.raise_for_status()
            listed = [i["item_id"] for i in answer.json()["items"]]
            return listed.index(target) if target in listed else None

        with ThreadPoolExecutor(self.concurrency) as pool:
            return list(tqdm(pool.map(one, rows), total=len(rows), desc=what, unit="request", leave=False))

    def add(self, items: list[dict]) -> dict[str, str]:
        """Post the items, 100 a request; their codes. Raises unless every answer says the model serves them."""
        from schemas.api import MAX_ADD

        codes: dict[str, str] = {}
        for start in range(0, len(items), MAX_ADD):
            answer = self.client.post("/v1/admin/items", headers=self.admin,
                                      json={"items": items[start:start + MAX_ADD], "note": "cold-start experiment"})
            answer.raise_for_status()
            body = answer.json()
            if not body["served"]:
                raise RuntimeError(f"the service recorded the items but does not serve them: {body['error']}")
            codes.update(body["codes"])
        return codes

    def close(self) -> None:
        from ops.sim.processes import stop

        self.client.close()
        stop(self.proc)


def offline_codes(data: Path, run: Path, held_items: set[str]) -> dict[str, str]:
    """The codes the experiment gave the held-out items (:func:`ops.experiments.coldstart.evaluate`)."""
    from recast.catalog import sid_text
    from recast.checkpoint import load_checkpoint
    from recast.dataset import load_catalog, load_item_entries
    from recast.sids.served import ServedCoder

    entries = load_item_entries(data)
    coder = ServedCoder.from_catalog(load_catalog(run / "base"), entries,
                                     known_tokens=load_checkpoint(run / "ckpt").tokenizer.vocab)  # fmt: skip
    codes = coder.assign({i: entries[i] for i in sorted(held_items)}, unused_paths=False)
    return {i: sid_text(c) for i, c in codes.items()}


def run_seed(args, seed: int, stack_env: dict[str, str], database_url: str) -> dict:
    """One seed on the API: its ranks before and after adding, its codes, and how both agree with the experiment."""
    from recast.dataset import load_item_entries
    from recast.sids.served import id_order

    run = args.out / f"seed-{seed}"
    ranks = json.loads((run / "ranks.json").read_text())
    recorded = ranks["variants"][SERVED]
    held_items, held_users = split(args.data, args.item_share, args.user_share, seed)
    rows = held_out_rows(args.data, held_items, held_users)
    env = {**stack_env, "RECAST_DATABASE_URL": database_url, "RECAST_DATA_DIR": str(run / "base"),
           "RECAST_RUN_DIR": str(args.out / "api-runs" / f"seed-{seed}"), "RECAST_BEAM_WIDTH": str(args.beam_width),
           "RECAST_ENGINE": "torch", "RECAST_REGISTRY_POLL_S": "0", "RECAST_CATALOG_POLL_S": "0",
           "RECAST_SPOOL_DIR": str(args.out / "api-runs" / f"seed-{seed}" / "spool"),
           "RECAST_TORCH_THREADS": str(args.threads)}  # fmt: skip
    service = Service(env, run / "ckpt", args.out / "api-runs" / f"seed-{seed}" / "api.log", args.concurrency)
    try:
        user = f"coldstart-{seed}"
        out = {"ready_s": round(service.ready_s, 1),
               "warm_before": service.ranks(rows.warm, user, f"seed {seed}: warm rows, before"),
               "mixed_before": service.ranks([([i for i in h if i not in held_items], t) for h, t in rows.mixed],
                                             user, f"seed {seed}: mixed rows, before")}  # fmt: skip
        entries = load_item_entries(args.data)
        codes = service.add([new_item(i, entries[i]) for i in sorted(held_items, key=id_order)])
        out |= {"cold_served": service.ranks(rows.cold, user, f"seed {seed}: cold rows, after"),
                "warm_after": service.ranks(rows.warm, user, f"seed {seed}: warm rows, after"),
                "mixed_after": service.ranks(rows.mixed, user, f"seed {seed}: mixed rows, after")}  # fmt: skip
    finally:
        service.close()
    expected = offline_codes(args.data, run, held_items)
    both = {"api": codes, "experiment": expected}
    (args.out / "api-runs" / f"seed-{seed}" / "codes.json").write_text(json.dumps(both))
    # The API codes 100 items a request, each against the catalog the earlier requests grew, where the experiment
    # coded all of them at once against the base: the first hundred agree, later ones may not.
    out["codes_as_the_experiment"] = sum(codes.get(i) == c for i, c in expected.items())
    out["new_items"] = len(expected)
    out["rows_as_the_experiment"] = {part: sum(a == b for a, b in zip(out[part], recorded[part], strict=True))
                                     for part in ("cold_served", "warm_after", "warm_before", "mixed_after",
                                                  "mixed_before")}  # fmt: skip
    out["cold_text"] = ranks["cold_text"]
    return out


def figures(runs: list[dict]) -> dict:
    """The API's figures over the runs' rows pooled, as :func:`ops.experiments.coldstart.report` reads them."""

    def pooled(part: str) -> list[int | None]:
        return [x for r in runs for x in r[part]]

    cold, text = pooled("cold_served"), pooled("cold_text")
    before = pooled("warm_before") + pooled("mixed_before") + [None] * len(cold)  # a cold target was not listable
    after = pooled("warm_after") + pooled("mixed_after") + cold
    return {"cold": {"served": summary(cold), "text": summary(text),
                     "served_minus_text": interval(hits(cold), hits(text))},
            "warm": {"before": summary(pooled("warm_before")), "after": summary(pooled("warm_after"))},
            "mixed": {"before": summary(pooled("mixed_before")), "after": summary(pooled("mixed_after"))},
            "all": {"before": summary(before), "after": summary(after),
                    "after_minus_before": interval(hits(after), hits(before))}}  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m ops.experiments.coldstart_api", description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=Path("data/amazon18-industrial"))
    parser.add_argument("--out", type=Path, default=Path("runs/coldstart"),
                        help="the cold-start experiment's output (its seed-N/ckpt, seed-N/base, seed-N/ranks.json)")
    parser.add_argument("--seeds", default="0", help="comma-separated seeds the experiment ran")
    parser.add_argument("--item-share", type=float, default=0.1, help="as the experiment ran")
    parser.add_argument("--user-share", type=float, default=0.2, help="as the experiment ran")
    parser.add_argument("--beam-width", type=int, default=20, help="as the experiment ran")
    parser.add_argument("--concurrency", type=int, default=8, help="requests in flight (the service batches them)")
    parser.add_argument("--threads", type=int, default=2, help="the service's torch threads")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    # Our progress lines only: the migrations' and the HTTP client's INFO lines are library noise here.
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s")
    log.setLevel(logging.INFO)
    from sqlalchemy.engine import make_url

    from ops.stack import embedded
    from ops.stack.servers import create_database, drop_database
    from schemas.settings import Settings

    settings = Settings()
    root = args.out / "api-stack"
    state = embedded.up(root, [settings.impressions_topic, settings.outcomes_topic])
    runs = {}
    try:
        for seed in (int(s) for s in args.seeds.split(",")):
            url = state.services["postgres"].url
            name = f"coldstart_seed{seed}"
            drop_database(url, name)  # a rerun starts from the data set's catalog again
            create_database(url, name)
            seed_url = make_url(url).set(database=name).render_as_string(hide_password=False)
            embedded.migrate(seed_url)
            runs[seed] = run_seed(args, seed, state.env(), seed_url)
            r = runs[seed]
            log.info("seed %d: codes as the experiment %d/%d; rows as the experiment %s; cold %s", seed,
                     r["codes_as_the_experiment"], r["new_items"], r["rows_as_the_experiment"],
                     summary(r["cold_served"]))  # fmt: skip
    finally:
        embedded.down(root)
    kept = ("ready_s", "new_items", "codes_as_the_experiment", "rows_as_the_experiment")
    result = {"args": {k: str(v) for k, v in vars(args).items()},
              "seeds": {s: {k: v for k, v in r.items() if k in kept} for s, r in runs.items()},
              "per_seed": {s: figures([r]) for s, r in runs.items()}, "pooled": figures(list(runs.values()))}
    (args.out / "api.json").write_text(json.dumps(result, indent=2))
    log.info("pooled: %s", json.dumps(result["pooled"]))


if __name__ == "__main__":
    main()
