from learner.rl.evalset import row_entries, window_entries
from recast.dataset import Interaction

POSITION = {str(i): i for i in range(20)}


def row(user, history, target):
    return Interaction(user_id=user, history=tuple(history), target=target)


def test_every_window_of_every_user_once_with_its_user():
    rows = [row("u", ["1", "2"], "3"), row("u", ["1", "2", "3"], "4"), row("v", ["1"], "3"), row("w", [], "5")]
    e = window_entries(rows, POSITION, max_history=2)
    assert list(zip(e.users, e.histories, e.targets)) == [
        ("u", [1], 2), ("u", [1, 2], 3), ("u", [2, 3], 4),  # u's second row adds one new window
        ("v", [1], 3),  # a row without history has no window: nothing to condition on
    ]  # fmt: skip
    rows_only = row_entries(rows, POSITION)
    assert rows_only.targets == [3, 4, 3, 5] and rows_only.users == ["u", "u", "v", "w"]
    assert e.head(2).targets == [2, 3] and e.head(None) is e
