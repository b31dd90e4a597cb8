"""What nights of learning buy on items added online: logged traffic that reaches the served list.

    python -m ops.experiments.nights --seeds 0,1,2,3 --days 4 [--arms counts,learned,recast,grpo]

Why (issue 15): on the shipped users a night's logged lists hold rows of the kind the models were trained on, and
nothing learnt from them reaches the served list measurably (the thirteenth round). Items added online are where
traffic holds what training did not: until someone buys one, the served ranking knows it by its text alone, and
the policy has never been taught to decode it.

For each seed, the cold-start split of ``ops.experiments.coldstart`` (10% of the items and 20% of the users held
out; the policy trained on the other users' rows that touch no held-out item, ``--preset``), then the held-out
items added with their text only, as served (used codes, nothing borrowed). The held-out users are split into
``--days`` days by a seeded hash; each row is a shopper's history and the item they bought. After each day, a
night learns from that day's rows as the nightly refresh learns from logged lists (``learner.refresh.run``):

- ``off``: no refresh;
- ``counts``: the rows counted into the transition scorer (``learner.refresh.learn.sequences`` at the policy's
  prompt length, then ``refresh_scorers``, which also refits the text scorer on the grown catalog and keeps a new
  item marked added until ``RefreshConfig.added_mark_until`` counts); the policy and the ranker kept;
- ``learned``: the same counts, and the policy's continued SFT on the rows at the teacher's length plus as many
  replayed windows (the base's training rows and the earlier days'), taught by the refreshed scorers and the
  ranker (``continue_sft``; ``RefreshConfig``'s epochs and learning rate);
- ``recast`` / ``grpo`` (on request): ``learned``, then that method's RL step (``rl_step``, ``RefreshConfig``'s
  steps and learning rate) on the day's reward groups: the arm's own list served to each shopper, rewarded where
  it held the item they bought, that item an organic positive where it did not (``logged_lists``).

Each arm carries its own model from night to night. Every day after the first is ranked by every arm, the served
ranking and the policy's beam alone:

- *cold* rows (a held-out target), all of them and those whose new item someone bought on an earlier day, these
  split by whether the counts reach the item from the row's history (``reach_flags``): where they do not, only
  the policy's learning could say something the ranker's scorers do not;
- *warm* rows (no held-out item anywhere) and *mixed* ones (an old target after a new item), so learning costs
  the old targets nothing; and every row together.

``--policy-weights`` ranks the served list at other shares of the policy; ``--gates`` at other shares on the items
the counts do not reach alone (``gated``); ``--compare`` pools another saved setting's arms beside this one's.

Paired bootstrap intervals on HR@10 and NDCG@10: per seed over its rows, and pooled over the seeds, resampling whole
seeds (``report``). The test split is never read. A seed trains one ``default`` policy (3-5 minutes on one thread;
reused by a rerun), and its nights and rankings take under a minute more.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from dataclasses import replace
from pathlib import Path

import torch

ARMS = ("off", "counts", "learned", "recast", "grpo")
RL_ARMS = ("recast", "grpo")
KINDS = ("cold", "cold, its item bought on an earlier day", "  of which the counts reach it from the history",
         "  of which they do not", "warm", "mixed", "every row")  # reach: reach_flags
VIEWS = ("served", "policy")
METRICS = ("HR@10", "NDCG@10")
REFERENCES = ("off", "counts", "learned")  # each ranking's differences are against these, where they ran


def night(ckpt, grown, rows: list, arm: str, pool: list, seed: int, refresh: dict, work: Path, beam_width: int):
    """``ckpt`` after one night of ``rows`` under ``arm`` (module doc): the counts always; the policy's continued
    SFT in the arms that learn (``pool``: the older windows it replays); then, in ``recast`` and ``grpo``, that
    method's RL step (its repairs written under ``work``). ``refresh``: ``RefreshConfig`` fields. Returns (child,
    what the night did)."""
    from learner.refresh import learn
    from learner.refresh.config import RefreshConfig

    config = RefreshConfig(**{**refresh, "seed": seed, **({"method": arm} if arm in RL_ARMS else {})})
    max_history = ckpt.prompt_history()
    counted = learn.sequences(rows, grown, max_history)
    transition, text = learn.refresh_scorers(ckpt, grown, counted, config.added_mark_until)
    child = replace(ckpt, transition=transition, text=text)
    done = {"counted_windows": len(counted)}
    if arm == "counts":
        return child, done
    sft_new = learn.sequences(rows, grown, max(max_history, ckpt.teacher_history()))
    replay = learn.replay_sample(pool, len(sft_new), config.replay_share, seed)
    sft = learn.continue_sft(ckpt, sft_new + replay, config, seed, scorers=(transition, text))
    child = replace(child, model=sft.model)
    done.update(sft_new=len(sft_new), sft_replay=len(replay), sft_steps=sft.steps,
                sft_loss_last=round(sum(sft.losses[-5:]) / max(1, len(sft.losses[-5:])), 4))  # fmt: skip
    if arm in RL_ARMS:  # the day's lists as served by the arm's model, and what each shopper bought
        contexts = learn.rl_contexts(logged_lists(ckpt, grown, rows, beam_width))
        rl = learn.rl_step(ckpt, sft.model, grown, contexts, config, work, seed,
                           replay=learn.replay_contexts(replay, max_history))  # fmt: skip
        child = replace(child, model=rl.model)
        done["rl"] = {k: round(v, 4) if isinstance(v, float) else v for k, v in rl.summary.items()}
    return child, done


def logged_lists(ckpt, grown, rows: list, beam_width: int) -> list:
    """``rows`` as the reward groups the day would have logged: the top ``K`` that ``ckpt`` served, and the
    shopper's purchase of the row's target, on the list (its reward) or off it (an organic positive)."""
    from learner.ingest.attribution import WEIGHTS
    from ops.experiments.coldstart import K, lists_of
    from recast.feedback import LoggedList
    from recast.recommender import Recommender

    rec, at = Recommender.from_checkpoint(ckpt, beam_width), grown.index
    histories = [[at[i] for i in r.history] for r in rows]
    served = lists_of(lambda hs, _: rec.recommend(hs, K), histories)
    out = []
    for row, history, ranked in zip(rows, histories, served, strict=True):
        items, target = tuple(i for i, _ in ranked), at[row.target]
        rewards = tuple(WEIGHTS["purchase"] if i == target else 0.0 for i in items)
        organic = () if target in items else ((target, WEIGHTS["purchase"]),)
        out.append(LoggedList(row.user_id, tuple(history[-ckpt.prompt_history() :]), items, rewards, organic,
                              organic_types=("purchase",) * len(organic)))  # fmt: skip
    return out


def measure(data: Path, out: Path, held_items: set[str], held_users: set[str], seed: int, beam_width: int,
            days: int, arms: list[str], weights: list[float], refresh: dict, work: Path,
            gates: list[float] = (), ranker=None) -> dict:  # fmt: skip
    """Per-row ranks of every day after the first, under every arm (module doc); ``weights``: the policy's shares
    of the served list to rank at besides the checkpoint's own, each as ``arm@weight``; ``gates``: the policy's
    shares of the items the arm's counts do not reach, each as ``arm~share`` (:func:`gated`); ``refresh``: the
    ``RefreshConfig`` fields the nights override; ``work``: where the RL arms' nights write their repairs;
    ``ranker``: a learned ranker to serve in place of the checkpoint's own (``coldstart.refit_rankers``)."""
    from learner.refresh.learn import sequences
    from ops.experiments.coldstart import add_online, partition
    from recast.checkpoint import load_checkpoint
    from recast.dataset import load_catalog, load_interactions, load_item_entries
    from recast.recommender import Recommender
    from recast.sids.served import ServedCoder

    base_ckpt = load_checkpoint(out / "ckpt")
    base_ckpt = base_ckpt if ranker is None else replace(base_ckpt, ranker=ranker)
    base = load_catalog(out / "base")
    entries = load_item_entries(data)
    coder = ServedCoder.from_catalog(base, entries, known_tokens=base_ckpt.tokenizer.vocab)
    _, grown, ckpt = add_online(coder, base, base_ckpt, {i: entries[i] for i in sorted(held_items)})
    at = grown.index
    by_day = days_of(data, held_users, days, seed)
    # The windows a night replays: the base's training rows, then each night's own, at the length SFT reads.
    sft_history = max(ckpt.prompt_history(), ckpt.teacher_history())
    pool = sequences(load_interactions(out / "base" / "valid.csv", grown), grown, sft_history)
    models = dict.fromkeys(arms, ckpt)
    # The served list at its own share, then the other shares, then the gated shares.
    blends = {"": None, **{f"@{w:g}": w for w in weights}, **{f"~{g:g}": ("gate", g) for g in gates}}
    result = {"days": days, "new_items": len(held_items), "nights": [],
              "rows": {k: {"day": [], "bought": [], "served": {f"{a}{w}": [] for a in arms for w in blends},
                           "policy": {a: [] for a in arms if a != "counts"}}
                       for k in ("cold", "warm", "mixed")}}  # fmt: skip
    result["rows"]["cold"]["reached"] = reach_flags(by_day, held_items, ckpt.prompt_history())
    bought: set[str] = set()
    for day, day_rows in enumerate(by_day):
        if day:
            cold, warm, mixed = partition(day_rows, held_items)
            for kind, part in (("cold", cold), ("warm", warm), ("mixed", mixed)):
                entry = result["rows"][kind]
                entry["day"] += [day] * len(part)
                entry["bought"] += [r.target in bought for r in part]
                histories, targets = [[at[i] for i in r.history] for r in part], [at[r.target] for r in part]
                decoded: dict[int, list] = {}  # the beams of each policy: counts keeps off's, decoded once
                for arm, model in models.items():
                    rec = Recommender.from_checkpoint(model, beam_width)
                    key = id(model.model)
                    decoded[key] = decoded.get(key) or decode(rec, histories)
                    served, alone = rank_day(rec, decoded[key], histories, targets, blends)
                    for suffix, r in served.items():
                        entry["served"][arm + suffix] += r
                    if arm in entry["policy"]:  # counts leave the policy as it was
                        entry["policy"][arm] += alone
        if day == days - 1:
            break
        done = {"day": day, "rows": len(day_rows)}
        for arm in arms:
            if arm != "off":
                models[arm], done[arm] = night(models[arm], grown, day_rows, arm, pool, seed + day, refresh,
                                               work / arm / f"night-{day}", beam_width)  # fmt: skip
        pool += sequences(day_rows, grown, sft_history)
        bought |= {r.target for r in day_rows} & held_items
        done["new_items_bought_so_far"] = len(bought)
        result["nights"].append(done)
    return result


def days_of(data: Path, held_users: set[str], days: int, seed: int) -> list[list]:
    """The held-out users' rows split into ``days`` days by a seeded hash of the user."""
    from learner.ranker_trainer import user_fold
    from recast.dataset import load_catalog, load_interactions

    rows = [r for r in load_interactions(data / "valid.csv", load_catalog(data)) if r.user_id in held_users]
    return [[r for r in rows if user_fold(r.user_id, days, seed) == d] for d in range(days)]


def reach_flags(by_day: list[list], held_items: set[str], max_history: int, scorer_history: int = 10) -> list[bool]:
    """For each cold row of every day after the first (in the order they are ranked), whether the nights' counts
    reach its target from its history: a counted pair on an earlier day (``learn.sequences`` at the policy's
    prompt length ``max_history``) from one of its last ``scorer_history`` items to it. The base's counts hold no
    pair into a held-out item, so the earlier days' pairs are all there are."""
    from ops.experiments.coldstart import partition
    from recast.windows import build_sequences, transitions

    position: dict[str, int] = {}
    for row in (r for day in by_day for r in day):
        for item in (*row.history, row.target):
            position.setdefault(item, len(position))
    counted: set[tuple[int, int]] = set()
    flags = []
    for day, rows in enumerate(by_day):
        if day:
            cold, _, _ = partition(rows, held_items)
            flags += [any((position[i], position[r.target]) in counted for i in r.history[-scorer_history:])
                      for r in cold]  # fmt: skip
        counted |= {(a, b) for a, b, _ in transitions(build_sequences(rows, position, max_history))}
    return flags


def decode(rec, histories: list[list[int]]) -> list:
    """``rec``'s policy decoded on ``histories``, 64 at a time (the batches ``lists_of`` ranks)."""
    return [rec.policy(histories[s : s + 64]) for s in range(0, len(histories), 64)]


def rank_day(rec, beams: list, histories: list[list[int]], targets: list[int], blends: dict):
    """The targets' ranks in the served lists, at each of ``blends``' shares of the policy (None: its own;
    ``("gate", share)``: :func:`gated`), and in the policy's beam alone; ``beams``: ``decode(rec, histories)``."""
    from ops.experiments.coldstart import K, lists_of, ranks

    served = {}
    for suffix, weight in blends.items():
        if isinstance(weight, tuple):
            lists = lists_of(lambda hs, start, g=weight[1]: gated(rec, hs, beams[start // 64], K, g), histories)
        else:
            blended = rec if weight is None else with_policy_weight(rec, weight)
            lists = lists_of(lambda hs, start, r=blended: r.rank(hs, beams[start // 64], K), histories)
        served[suffix] = ranks(lists, targets)
    return served, ranks([b.top(row) for b in beams for row in range(b.items.shape[0])], targets)


def gated(rec, histories: list[list[int]], beams, k: int, share: float) -> list[list[tuple[int, float]]]:
    """The served list with the policy's share raised to ``share`` on the items the transition counts do not reach
    from the row's history (no counted pair from any of its scorers' items to the item), its own share elsewhere:
    after the ranker, or in the fixed mix (the transition scorer giving up what the policy gains). At the own
    share it is the served list exactly.

    Where the counts reach an item, they have learnt what the logs say about it, and the ranker reads them; where
    they do not, the ranker knows the item by its text alone, and what the policy has learnt of it (similar items'
    successors) is all the served list could take from learning."""
    from recast.fusion import beam_distribution, mix_scorers
    from recast.ranker import candidates

    cut = [h[-rec.scorer_history :] for h in histories]
    transition, text = rec.transition_scores(histories), rec.text_scores(histories)
    reach = reached(rec.transition, cut, rec.num_items)

    def per_item(own: float, gate: float) -> torch.Tensor:  # the weights as the served path's own floats
        return torch.where(reach, torch.tensor(own), torch.tensor(gate))

    if rec.ranker is None:
        own, w_text = rec.fusion.policy_weight, rec.fusion.text_weight if text is not None else 0.0
        rest = mix_scorers(transition, text, per_item(1.0 - own - w_text, max(0.0, 1.0 - share - w_text)), w_text)
    else:
        own = rec.ranker.policy_weight
        cands = candidates(cut, rec.transition, rec.text, rec.ranker.per_scorer, transition, text)
        rest = per_item(1.0 - own, 1.0 - share) * rec.ranker.probabilities(cands, rec.num_items)
    dist = beam_distribution(beams.items, beams.scores, rec.fusion.temperature)
    fused = rest + per_item(own, share) * torch.zeros_like(rest).scatter_add(1, beams.items.clamp(min=0), dist)
    order = torch.argsort(-fused, dim=1, stable=True)[:, :k]
    return [list(zip(o, v, strict=True)) for o, v in zip(order.tolist(), fused.gather(1, order).tolist(), strict=True)]


def reached(transition, histories: list[list[int]], num_items: int) -> torch.Tensor:
    """(B, N) bool: the items a counted pair leads to from any item of each history."""
    out = torch.zeros(len(histories), num_items, dtype=torch.bool)
    for row, history in enumerate(histories):
        for item in history:
            out[row, transition.next_items[transition.offsets[item] : transition.offsets[item + 1]]] = True
    return out


def with_policy_weight(rec, weight: float):
    """``rec`` serving the policy's beam at ``weight``: the share blended after its ranker, or without one, the
    policy's weight in the fixed mix."""
    if rec.ranker is None:
        return replace(rec, fusion=replace(rec.fusion, policy_weight=weight))
    return replace(rec, ranker=replace(rec.ranker, policy_weight=weight))


def report(runs: dict[int, dict]) -> dict:
    """Per seed and pooled, for each kind of row and each ranking (served: every arm at every share; the policy's
    beam alone): HR@10 / NDCG@10, and the paired differences of both against ``off``, ``counts`` (the refresh without
    the policy's SFT, at the checkpoint's own share) and ``learned`` (without an RL step).

    A seed's interval resamples its rows (one a shopper). The pooled one resamples whole seeds: each seed is its
    own split of items and users, so its rows share which items are new and who bought them first, and how much a
    night teaches differs far more between seeds than between rows."""
    from ops.experiments.coldstart import interval, summary
    from recast.metrics import per_entry_scores

    def kinds(run: dict) -> dict[str, dict]:
        cold, warm = run["rows"]["cold"], run["rows"]["warm"]
        reach = cold["reached"]

        def pick(keep: list[bool]) -> dict:
            return {view: {a: [x for x, k in zip(r, keep, strict=True) if k] for a, r in cold[view].items()}
                    for view in VIEWS}  # fmt: skip

        bought = cold["bought"]
        parts = [pick([True] * len(bought)), pick(bought), pick([b and r for b, r in zip(bought, reach, strict=True)]),
                 pick([b and not r for b, r in zip(bought, reach, strict=True)]), {v: warm[v] for v in VIEWS}]
        mixed = run["rows"].get("mixed")  # ranks saved before the mixed rows were ranked lack them
        if mixed:
            parts += [{v: mixed[v] for v in VIEWS},
                      {v: {a: cold[v][a] + warm[v][a] + mixed[v][a] for a in cold[v]} for v in VIEWS}]  # fmt: skip
        return dict(zip(KINDS, parts, strict=False))

    def figures(parts: list[dict]) -> dict:
        """``parts``: one seed's rows, or every seed's (then resampled by seed)."""
        out = {}
        for view in VIEWS:
            common = [a for a in parts[0][view] if all(a in p[view] for p in parts)]  # seeds run with other shares
            pooled = {a: [x for p in parts for x in p[view][a]] for a in common}
            sizes = [len(p[view][common[0]]) for p in parts]
            clusters = ([str(i) for i in range(sizes[0])] if len(parts) == 1
                        else [str(k) for k, n in enumerate(sizes) for _ in range(n)])  # fmt: skip
            scores = {a: {m: per_entry_scores(r, m) for m in METRICS} for a, r in pooled.items()}
            out[view] = {a: {"summary": summary(r),
                             **{f"minus_{b}": {m: interval(scores[a][m], scores[b][m], clusters) for m in METRICS}
                                for b in REFERENCES if b in pooled and b != a}}
                         for a, r in pooled.items()}  # fmt: skip
        return out

    parts = {seed: kinds(run) for seed, run in runs.items()}
    per_seed = {seed: {k: figures([v]) for k, v in part.items()} for seed, part in parts.items()}
    shared = [k for k in KINDS if all(k in part for part in parts.values())]  # older runs lack the mixed rows
    pooled = {k: figures([part[k] for part in parts.values()]) for k in shared}
    return {"seeds": per_seed, "pooled": pooled, "nights": {s: r["nights"] for s, r in runs.items()}}


def merge(run: dict, other: dict, label: str) -> None:
    """``other``'s rankings added to ``run``'s as ``ARM [label]``: the same seed's rows under another setting."""
    for kind, rows in run["rows"].items():
        if other["rows"][kind]["day"] != rows["day"]:
            raise SystemExit(f"{label}: its {kind} rows are not this run's (another --days or data?)")
        for view in VIEWS:
            rows[view].update({f"{a} [{label}]": r for a, r in other["rows"][kind][view].items()})


def table(result: dict, view: str, seeds: bool = True) -> str:
    """One line per (seed, then pooled), kind of row and ranking: HR@10 / NDCG@10 and the differences against each
    reference arm that ran."""
    first = next(iter(result["pooled"].values()))[view]
    references = [b for b in REFERENCES if b in first]
    lines = ["| seed | rows | ranking | n | HR@10 / NDCG@10 | "
             + " | ".join(f"− {b}: HR@10 | NDCG@10" for b in references) + " |",
             "| --- " * (5 + 2 * len(references)) + "|"]  # fmt: skip

    def change(d: dict | None) -> str:
        return "" if not d or d.get("rows", 0) == 0 else f"{d['diff']:+.4f} [{d['ci95'][0]:+.4f}, {d['ci95'][1]:+.4f}]"

    for seed, kinds in [*(result["seeds"].items() if seeds else []), ("pooled", result["pooled"])]:
        for kind, f in kinds.items():
            for arm, g in f[view].items():
                s = g["summary"]
                cells = [change(g.get(f"minus_{b}", {}).get(m)) for b in references for m in METRICS]
                lines.append(f"| {seed} | {kind} | {arm} | {s['rows']} | {s.get('hr@10', 0):.4f} / "
                             f"{s.get('ndcg@10', 0):.4f} | {' | '.join(cells)} |")  # fmt: skip
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m ops.experiments.nights", description=__doc__.split("\n\n")[0],
                                     epilog="Writes OUT/seed-N/ranks-LABEL.json and OUT/result-LABEL.json "
                                     "(LABEL: --days, then --set); prints the served ranking's table, then the "
                                     "policy's beam alone.")
    parser.add_argument("--data", type=Path, default=Path("data/amazon18-industrial"), help="data set directory")
    parser.add_argument("--out", type=Path, default=Path("runs/nights"), help="where the seeds' runs go")
    parser.add_argument("--preset", default="default", help="SFT preset (recast.sft.PRESETS)")
    parser.add_argument("--epochs", type=int, default=None, help="override the preset's epochs (a smoke run)")
    parser.add_argument("--beam-width", type=int, default=20, help="the policy's beam, as coldstart scores")
    parser.add_argument("--days", type=int, default=4, help="days the held-out shoppers are split over (>= 2)")
    parser.add_argument("--arms", default="counts,learned", help=f"comma-separated, from {ARMS}; off always runs")
    parser.add_argument("--policy-weights", default="", help="comma-separated shares of the served list to give "
                        "the policy besides the ranker's own (ranked as ARM@SHARE; e.g. 0.4,0.6)")
    parser.add_argument("--gates", default="", help="comma-separated shares of the served list to give the policy "
                        "on the items the arm's counts do not reach from the history (ranked as ARM~SHARE)")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                        help="override a field of the nights' learner.refresh.config.RefreshConfig (e.g. "
                        "sft_epochs=4); the runs are saved under a name holding them")
    parser.add_argument("--ranker", action="append", default=[], metavar="FIELD=VALUE",
                        help="serve a learned ranker refitted on the base's rows with this recast.ranker.RankerConfig "
                        "field changed (e.g. young_share=0.1), in place of the checkpoint's own")
    parser.add_argument("--seeds", default="0", help="comma-separated seeds")
    parser.add_argument("--compare", metavar="LABEL", help="also pool the arms of another label's saved ranks on the "
                        "same seeds (as 'ARM [LABEL]'), each against this label's reference arms (e.g. --set "
                        "added_mark_until=1 --compare 4d: the refresh's mark kept to 20 counts against 1)")
    parser.add_argument("--pooled", action="store_true", help="print the pooled lines only")
    parser.add_argument("--pool-only", action="store_true", help="train and score nothing: pool the seeds' saved "
                        "ranks (OUT/seed-N/ranks-LABEL.json, e.g. from runs of a few seeds each, side by side)")
    args = parser.parse_args(argv)
    arms = ["off", *(a for a in args.arms.split(",") if a != "off")]
    weights = [float(w) for w in args.policy_weights.split(",") if w]
    gates = [float(g) for g in args.gates.split(",") if g]
    if args.days < 2 or not set(arms) <= set(ARMS):
        parser.error(f"--days must be >= 2 and --arms drawn from {ARMS}")

    from ops.experiments.coldstart import prepare, refit_rankers
    from ops.experiments.policy import _value

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(int(os.environ.get("RECAST_TORCH_THREADS", "2")))
    runs = {}
    refresh = {k: _value(v) for k, v in (item.split("=", 1) for item in args.set)}
    overrides = {k: _value(v) for k, v in (item.split("=", 1) for item in args.ranker)}
    label = (f"{args.days}d" + "".join(f"-{item}" for item in sorted(args.set))
             + "".join(f"-ranker-{item}" for item in sorted(args.ranker)))  # fmt: skip
    name = f"ranks-{label}.json"
    for seed in (int(s) for s in args.seeds.split(",")):
        out = args.out / f"seed-{seed}"
        if not args.pool_only:
            held_items, held_users, _, config = prepare(args.data, out, seed, args.preset, args.epochs)
            ranker = refit_rankers(out, config, [overrides])[0] if args.ranker else None
            run = measure(args.data, out, held_items, held_users, seed, args.beam_width, args.days, arms, weights,
                          refresh, out / f"rl-{label}", gates, ranker)  # fmt: skip
            (out / name).write_text(json.dumps(run))
        runs[seed] = json.loads((out / name).read_text())
        if "reached" not in runs[seed]["rows"]["cold"]:  # saved before the flags were: they read the data alone
            held_items, held_users, _, config = prepare(args.data, out, seed, args.preset, args.epochs)
            by_day = days_of(args.data, held_users, args.days, seed)
            runs[seed]["rows"]["cold"]["reached"] = reach_flags(by_day, held_items, config.max_history)
    if args.compare:
        for seed, run in runs.items():
            merge(run, json.loads((args.out / f"seed-{seed}" / f"ranks-{args.compare}.json").read_text()), args.compare)
        label += f"-vs-{args.compare}"
    result = report(runs)
    (args.out / f"result-{label}.json").write_text(json.dumps(result, indent=1) + "\n")
    print("\n\n".join(f"{title}:\n{table(result, view, not args.pooled)}"
                      for title, view in (("The served ranking", "served"), ("The policy's beam alone", "policy"))))


if __name__ == "__main__":
    main()
