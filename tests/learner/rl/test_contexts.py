from learner.rl.contexts import offline_contexts
from recast.dataset import Interaction


def row(user, history, target):
    return Interaction(user_id=user, history=tuple(history), target=target)


POSITION = {str(i): i for i in range(20)}


def test_every_window_is_a_context_once_per_user_with_its_target_as_positive_and_anchor():
    rows = [row("u", ["1", "2"], "3"), row("u", ["1", "2", "3"], "4"), row("v", ["1", "2"], "3")]
    contexts = offline_contexts(rows, POSITION, max_history=10)
    got = [(c.history, c.positives, [a.item for a in c.anchors], c.segment) for c in contexts]
    assert got == [
        ((1,), {2: 1.0}, [2], "short"),
        ((1, 2), {3: 1.0}, [3], "short"),
        ((1, 2, 3), {4: 1.0}, [4], "medium"),  # u's second row repeats its first two windows: counted once
        ((1,), {2: 1.0}, [2], "short"),  # another user: a context of its own
        ((1, 2), {3: 1.0}, [3], "short"),
    ]
    assert all(a.source == "offline_target" for c in contexts for a in c.anchors)


def test_histories_are_cut_to_the_prompt_length():
    contexts = offline_contexts([row("u", [str(i) for i in range(1, 8)], "9")], POSITION, max_history=3)
    assert contexts[-1].history == (5, 6, 7) and contexts[-1].positives == {9: 1.0}
    assert max(len(c.history) for c in contexts) == 3
