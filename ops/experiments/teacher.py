"""How far the policy is from its teacher (issue 15), on the inner tuning rows only.

    python -m ops.experiments.teacher cuts                        # the teacher by history cut and text share
    python -m ops.experiments.teacher agreement runs/policy/tune/default+base/seed0
    python -m ops.experiments.teacher ranker-cuts runs/policy/tune/default+ranker-teacher-sharp1/seed0
    python -m ops.experiments.teacher objective runs/policy/tune/default+again/seed0
    python -m ops.experiments.teacher anchored-objective runs/policy/tune/default+base/seed0

``cuts`` scores the distillation teacher (the transition and text scorers mixed, ``recast.distill``) on
``inner/tune.csv`` with its history cut to the last 1, 2, 3, 5 and 10 items: what a one-item policy could reach by
imitating it, and what longer contexts would add. ``agreement`` takes a trained tune run and compares, per tuning
row, the policy's beam, the policy scored over every catalog item (is beam search losing items?) and the one-item
teacher: hit rates and how many of the teacher's top 10 the policy keeps. It scores every item for every row, a few
minutes on one core. ``ranker-cuts`` does for a tune run's learned ranker (today's teacher,
``recast.distill.ranker_teacher_scores``) what ``cuts`` does for the mix: the quality a policy prompted with the
last item could reach by imitating it, against what the ranker reaches on the ten items it serves with;
``--anchors=5`` reads it as the policy's five anchors are decoded, each prefix cut alike, and ``--top=K`` keeps each
reading's best K items only. ``objective`` takes a one-item tune run and writes out what it was trained towards, per
item, as a table (``recast.distill.teacher_table_sequences``: the windows' hard labels and teacher, and the made-up
pairs, summed), then ranks the tuning rows by that table, by the teacher alone, and by the policy's beam: how far the
policy is from its own objective, and how many of the objective's top 10 it keeps. ``anchored-objective`` does the
same as the policy is served, on five anchors, with the objective rebuilt exactly as the run's training built it
(its teacher labels too), and says for which anchor items the policy falls short of it and which of its parts rank.
"""

from __future__ import annotations

import argparse
from pathlib import Path

CUTS = (1, 2, 3, 5, 10)
TEXT_SHARES = (0.0, 0.3, 0.5)


def _rows(data: Path, out: Path):
    from recast.dataset import load_catalog, load_interactions

    catalog = load_catalog(data)
    rows = load_interactions(out / "inner" / "tune.csv", catalog)
    return catalog, [[catalog.index[i] for i in r.history] for r in rows], [catalog.index[r.target] for r in rows]


def cuts(data: Path, out: Path) -> list[tuple]:
    """(history cut, text share, HR@1, HR@10, NDCG@10) of the teacher fitted on ``inner/fit.csv``."""
    import torch

    from recast.baselines import TransitionModel, top_items
    from recast.dataset import load_interactions
    from recast.distill import teacher_scores
    from recast.metrics import rank_of, summarize
    from recast.text import TextModel, item_text
    from recast.windows import build_sequences

    catalog, histories, targets = _rows(data, out)
    sequences = build_sequences(load_interactions(out / "inner" / "fit.csv", catalog), catalog.index, 10)
    transition = TransitionModel.fit(sequences, len(catalog))
    text = TextModel.fit([item_text(item) for item in catalog.items])
    table = []
    for n in CUTS:
        cut = [h[-n:] for h in histories]
        for share in TEXT_SHARES:
            with torch.no_grad():
                scores = teacher_scores(transition, text, cut, share)
            m = summarize([rank_of(t, top_items(scores[row], 50)) for row, t in enumerate(targets)])
            table.append((n, share, m["HR@1"], m["HR@10"], m["NDCG@10"]))
    return table


def anchored_ranker_scores(ckpt, histories: list[list[int]], cut: int, anchors: int = 1,
                           decay: float = 0.5, top: int = 0):  # fmt: skip
    """(B, N) the checkpoint's learned ranker read as an anchored policy is decoded (``recast.anchors``): once per
    each of a history's last ``anchors`` prefixes, each cut to its last ``cut`` items, the probabilities mixed at
    the anchors' weights. ``anchors=1``: the ranker on the history cut to ``cut`` items. ``top`` > 0 keeps each
    reading's best ``top`` items, renormalised, as a policy that learnt only that much of each reading would."""
    import torch

    from recast.anchors import anchor_histories
    from recast.distill import ranker_teacher_scores, top_k_distribution

    prefixes, layout = anchor_histories(histories, anchors, decay)
    with torch.no_grad():
        probs = ranker_teacher_scores(ckpt.transition, ckpt.text, ckpt.ranker, [p[-cut:] for p in prefixes])
    if top > 0:
        items, kept = top_k_distribution(probs, top, 1.0)
        probs = torch.zeros_like(probs).scatter_(1, items, kept)
    return _anchor_mix(probs, layout)


def _anchor_mix(per_prompt, layout):
    """(P, N) scores per anchor prompt -> (B, N) per request, mixed at the anchors' weights (``recast.anchors``:
    ``merge_beams`` does the same over beams)."""
    import torch

    mixed = torch.zeros(layout.requests, per_prompt.shape[1])
    return mixed.index_add_(0, layout.rows, per_prompt * layout.weights[:, None])


def ranker_cuts(data: Path, out: Path, run: Path, anchors: int = 1, decay: float = 0.5, top: int = 0) -> list[tuple]:
    """(history cut, HR@1, HR@10, NDCG@10) of the tune run's learned ranker (fitted on ``inner/fit.csv``) alone on
    the tuning rows, each history cut to its last items; with ``anchors`` > 1, read once per anchor and mixed as
    the policy's anchored decoding mixes its beams (:func:`anchored_ranker_scores`): what a one-item policy decoded
    that way could reach by imitating the ranker cut to one item; with ``top``, by imitating each reading's best
    ``top`` items only."""
    from recast.baselines import top_items
    from recast.checkpoint import load_checkpoint
    from recast.metrics import rank_of, summarize

    ckpt = load_checkpoint(run / "ckpt")
    if ckpt.ranker is None:
        raise SystemExit(f"{run}: its checkpoint has no learned ranker")
    _, histories, targets = _rows(data, out)
    table = []
    for n in CUTS:
        ranks = []
        for start in range(0, len(histories), 64):
            scores = anchored_ranker_scores(ckpt, histories[start : start + 64], n, anchors, decay, top)
            ranks += [rank_of(t, top_items(s, 50)) for s, t in zip(scores, targets[start : start + 64], strict=True)]
        m = summarize(ranks)
        table.append((n, m["HR@1"], m["HR@10"], m["NDCG@10"]))
    return table


def agreement(data: Path, out: Path, run: Path, beam_width: int = 50) -> dict:
    """The policy's beam against all items scored, and both against the one-item teacher, on the tuning rows."""
    import torch
    from tqdm.auto import tqdm

    from recast.baselines import top_items
    from recast.beam import score_codes
    from recast.checkpoint import load_checkpoint
    from recast.distill import teacher_scores
    from recast.metrics import rank_of, summarize
    from recast.recommender import Recommender
    from recast.sft import SFTConfig

    ckpt = load_checkpoint(run / "ckpt")
    share = SFTConfig(**ckpt.manifest["sft_config"]).teacher_text_weight
    rec = Recommender.from_checkpoint(ckpt, beam_width)
    catalog, histories, targets = _rows(data, out)
    ranks: dict[str, list] = {"beam": [], "every item": [], "teacher": []}
    kept: dict[str, list] = {"beam": [], "every item": []}
    for start in tqdm(range(0, len(histories), 8), desc="rows", unit="batch", leave=False):
        hist, tgt = histories[start : start + 8], targets[start : start + 8]
        with torch.no_grad():
            beams = rec.policy(hist)
            every = score_codes(rec.model, rec.trie, rec.prompts(hist), ckpt.codes[None].expand(len(hist), -1, -1),
                                ckpt.tokenizer.pad_id)  # fmt: skip
            teacher = teacher_scores(ckpt.transition, ckpt.text, [h[-1:] for h in hist], share)
        for row, target in enumerate(tgt):
            lists = {"beam": [i for i, _ in beams.top(row, 50)], "every item": top_items(every[row], 50),
                     "teacher": top_items(teacher[row], 50)}  # fmt: skip
            for name, items in lists.items():
                ranks[name].append(rank_of(target, items))
            for name in kept:
                kept[name].append(len(set(lists[name][:10]) & set(lists["teacher"][:10])))
    return {"metrics": {name: summarize(r) for name, r in ranks.items()},
            "teacher_top10_kept": {name: sum(k) / len(k) for name, k in kept.items()}}  # fmt: skip


def objective(data: Path, out: Path, run: Path) -> dict:
    """A one-item tune run's objective, its teacher and its policy (its beam of 50) on the tuning rows."""
    import torch

    from learner.sft_trainer import scorer_source, table_config, teacher_function
    from recast.baselines import top_items
    from recast.checkpoint import load_checkpoint
    from recast.dataset import load_interactions
    from recast.distill import teacher_table_sequences, top_k_distribution
    from recast.metrics import rank_of, summarize
    from recast.recommender import Recommender
    from recast.sft import SFTConfig
    from recast.windows import build_sequences, short_context_sequences

    ckpt = load_checkpoint(run / "ckpt")
    config = SFTConfig(**ckpt.manifest["sft_config"])
    if config.max_history != 1:
        raise SystemExit(f"{run}: not a one-item policy (max_history={config.max_history})")
    catalog, histories, targets = _rows(data, out)
    n = len(catalog)
    # The run's windows, as its training cut them (learner.sft_trainer.prepare_data).
    windows = short_context_sequences(
        build_sequences(load_interactions(out / "inner" / "fit.csv", catalog), catalog.index, scorer_source(config)),
        1, config.short_context_weight)  # fmt: skip
    score = teacher_function(ckpt.transition, ckpt.text, config, ckpt.ranker)
    contexts = sorted({h[-1] for h in histories})
    objective_table, teacher_table = torch.zeros(len(contexts), n), torch.zeros(len(contexts), n)
    row = {x: i for i, x in enumerate(contexts)}
    with torch.no_grad():
        for seq in teacher_table_sequences(windows, score, n, table_config(config, keep=n), items=contexts):
            objective_table[row[seq.items[0]], seq.items[1]] = seq.weights[1]
        items, probs = top_k_distribution(score([(x,) for x in contexts]), config.teacher_top_k,
                                          config.teacher_sharpness)  # fmt: skip
        teacher_table.scatter_(1, items, probs)
        # The policy's beam of 50, as served: exact here (the second round's ``agreement`` found its ranks equal to
        # every item scored), and far cheaper.
        beams = Recommender.from_checkpoint(ckpt, 50).policy([[x] for x in contexts])
    tops = {"objective": [top_items(t, 50) for t in objective_table],
            "teacher": [top_items(t, 50) for t in teacher_table],
            "policy": [[i for i, _ in beams.top(r, 50)] for r in range(len(contexts))]}  # fmt: skip
    result = {}
    for name, lists in tops.items():
        kept = [len(set(lists[row[h[-1]]][:10]) & set(tops["objective"][row[h[-1]]][:10])) for h in histories]
        ranks = [rank_of(t, lists[row[h[-1]]]) for h, t in zip(histories, targets, strict=True)]
        result[name] = {**summarize(ranks), "objective_top10_kept": sum(kept) / len(kept)}
    return result


def anchored_objective(data: Path, out: Path, run: Path, anchors: int = 5, decay: float = 0.5) -> list[tuple]:
    """A one-item tune run's policy against what it was trained towards, both read per anchor as the policy is
    decoded (``recast.anchors``), on the tuning rows: (ranking, HR@1, HR@10, NDCG@10) rows.

    The objective is rebuilt as the run's training built it (``learner.sft_trainer.prepare_data``: its windows with
    their teacher labels, whatever the teacher read, and its made-up pairs), summed per context item and
    normalised. Rows: the policy (each anchor's beam at its probabilities, as ``recast.anchors.merge_beams`` reads
    it, so the row ranks as the policy is served); the objective; the policy with the objective swapped in only for
    the anchor items that are the context of 0, 1-4, 5-19 or 20+ counted windows (which items the policy fails to
    fit); and the objective from its parts (the windows' true items and teacher labels, the made-up pairs), which
    says what is worth fitting."""
    from dataclasses import replace as swap

    import torch

    from learner.sft_trainer import prepare_data
    from ops.experiments.targets import GROUPS, count_group
    from recast.anchors import anchor_histories
    from recast.baselines import top_items
    from recast.checkpoint import load_checkpoint
    from recast.metrics import rank_of, summarize
    from recast.recommender import Recommender
    from recast.sft import SFTConfig

    ckpt = load_checkpoint(run / "ckpt")
    config = SFTConfig(**ckpt.manifest["sft_config"])
    if config.max_history != 1 or config.teacher_table:
        raise SystemExit(f"{run}: not a one-item policy trained on windows (max_history={config.max_history}, "
                         f"teacher_table={config.teacher_table})")  # fmt: skip
    training = prepare_data(data, out / "inner" / "fit.csv", config)
    catalog, histories, targets = _rows(data, out)
    n, alpha = len(catalog), config.distill_weight
    true_items, teacher, pairs, contexts = torch.zeros(n, n), torch.zeros(n, n), torch.zeros(n, n), torch.zeros(n)
    rows = training.labels.rows if training.labels is not None else [(-1, -1)] * len(training.sequences)
    for seq, (_, row) in zip(training.sequences, rows, strict=True):
        (x, y), weight = seq.items, seq.weights[1]
        if weight <= 0:
            continue
        if row < 0:  # a made-up pair (or a window without a label: its true item alone)
            pairs[x, y] += weight
            continue
        contexts[x] += 1
        true_items[x, y] += weight * (1.0 - alpha)
        teacher[x].index_add_(0, training.labels.items[row], weight * alpha * training.labels.probs[row])

    prefixes, layout = anchor_histories(histories, anchors, decay)
    items = torch.tensor([p[-1] for p in prefixes])
    rec = swap(Recommender.from_checkpoint(ckpt, 50), anchors=1)
    policy = torch.zeros(len(prefixes), n)
    with torch.no_grad():
        for start in range(0, len(prefixes), 256):
            beams = rec.policy(prefixes[start : start + 256])
            held = beams.items >= 0
            at = torch.arange(beams.items.shape[0])[:, None].expand_as(beams.items)
            policy[start : start + 256].index_put_((at[held], beams.items[held]), beams.scores.exp()[held])

    def per_prompt(table: torch.Tensor) -> torch.Tensor:  # each prompt's row of a per-item table, normalised
        rows_of = table[items]
        return rows_of / rows_of.sum(dim=1, keepdim=True).clamp(min=1e-12)

    def scored(name: str, prompts: torch.Tensor) -> tuple:
        mixed = _anchor_mix(prompts, layout)
        m = summarize([rank_of(t, top_items(s, 50)) for s, t in zip(mixed, targets, strict=True)])
        return name, m["HR@1"], m["HR@10"], m["NDCG@10"]

    whole = per_prompt(true_items + teacher + pairs)
    table = [scored("the policy", policy), scored("its objective", whole)]
    # Anchor items grouped by how many counted windows have them as their context, as targets groups targets.
    prompt_groups = [count_group(c) for c in contexts[items].tolist()]
    for group in GROUPS[1:]:
        chosen = torch.tensor([g == group for g in prompt_groups])[:, None]
        table.append(scored(f"the policy, the objective where the anchor item is the context of {group} windows "
                            f"({int(chosen.sum())} prompts)", torch.where(chosen, whole, policy)))  # fmt: skip
    for name, part in (("the objective without the windows' true items", teacher + pairs),
                       ("the windows' teacher labels alone", teacher),
                       ("the windows' true items alone", true_items), ("the made-up pairs alone", pairs)):  # fmt: skip
        table.append(scored(name, per_prompt(part)))
    return table


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m ops.experiments.teacher", description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=Path("data/amazon18-industrial"), help="data set directory")
    parser.add_argument("--out", type=Path, default=Path("runs/policy"), help="where `policy prepare` wrote inner/")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("cuts", help="the teacher on the tuning rows by history cut and text share")
    p = sub.add_parser("agreement", help="a tune run's policy: beam vs every item scored vs the one-item teacher")
    p.add_argument("run", type=Path, help="a tune run folder (holds ckpt/)")
    p = sub.add_parser("ranker-cuts", help="a tune run's learned ranker on the tuning rows by history cut")
    p.add_argument("run", type=Path, help="a tune run folder (holds ckpt/ with a ranker)")
    p.add_argument("--anchors", type=int, default=1, help="read the ranker once per each of the last this many "
                   "prefixes, mixed as anchored decoding mixes beams (recast.anchors); 1: once")  # fmt: skip
    p.add_argument("--decay", type=float, default=0.5, help="the anchors' weight decay per step back")
    p.add_argument("--top", type=int, default=0, help="keep each reading's best this many items, renormalised "
                   "(what a policy that learnt only that much of it could reach); 0: all")  # fmt: skip
    p = sub.add_parser("objective", help="a one-item tune run: its objective, its teacher and its policy, as tables")
    p.add_argument("run", type=Path, help="a tune run folder of a one-item policy (holds ckpt/)")
    p = sub.add_parser("anchored-objective", help="a one-item tune run's policy against its objective, both read "
                       "per anchor, and which anchor items it fails to fit")  # fmt: skip
    p.add_argument("run", type=Path, help="a tune run folder of a one-item policy (holds ckpt/)")
    p.add_argument("--anchors", type=int, default=5, help="prompts a request, as the policy is decoded")
    p.add_argument("--decay", type=float, default=0.5, help="the anchors' weight decay per step back")
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    if args.command == "cuts":
        print("| history cut | text share | HR@1 | HR@10 | NDCG@10 |\n| --- | --- | --- | --- | --- |")
        for n, share, hr1, hr10, ndcg in cuts(args.data, args.out):
            print(f"| {n} | {share} | {hr1:.4f} | {hr10:.4f} | {ndcg:.4f} |")
    elif args.command == "ranker-cuts":
        print("| history cut | HR@1 | HR@10 | NDCG@10 |\n| --- | --- | --- | --- |")
        for n, hr1, hr10, ndcg in ranker_cuts(args.data, args.out, args.run, args.anchors, args.decay, args.top):
            print(f"| {n} | {hr1:.4f} | {hr10:.4f} | {ndcg:.4f} |")
    elif args.command == "anchored-objective":
        print("| ranking | HR@1 | HR@10 | NDCG@10 |\n| --- | --- | --- | --- |")
        for name, hr1, hr10, ndcg in anchored_objective(args.data, args.out, args.run, args.anchors, args.decay):
            print(f"| {name} | {hr1:.4f} | {hr10:.4f} | {ndcg:.4f} |")
    elif args.command == "objective":
        print("| ranking | HR@1 | HR@10 | NDCG@10 | of the objective's top 10, kept in its top 10 |\n"
              "| --- | --- | --- | --- | --- |")  # fmt: skip
        for name, m in objective(args.data, args.out, args.run).items():
            print(f"| {name} | {m['HR@1']:.4f} | {m['HR@10']:.4f} | {m['NDCG@10']:.4f} | "
                  f"{m['objective_top10_kept']:.2f} |")  # fmt: skip
    else:
        result = agreement(args.data, args.out, args.run)
        print("| ranking | HR@1 | HR@10 | NDCG@10 | of the teacher's top 10, kept in its top 10 |\n"
              "| --- | --- | --- | --- | --- |")  # fmt: skip
        for name, m in result["metrics"].items():
            kept = result["teacher_top10_kept"].get(name)
            print(f"| {name} | {m['HR@1']:.4f} | {m['HR@10']:.4f} | {m['NDCG@10']:.4f} | "
                  f"{'' if kept is None else f'{kept:.2f}'} |")  # fmt: skip


if __name__ == "__main__":
    main()
