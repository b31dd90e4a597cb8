"""Added items borrowing transitions from their nearest known items by text (``recast.added_items``)."""

import pytest

from recast.added_items import BORROW, Borrow, borrowed_transitions
from recast.baselines import TransitionModel
from recast.text import TextModel
from recast.windows import Sequence

KNOWN = ["red steel hammer", "blue steel hammer", "green garden hose", "yellow garden hose", "red paint brush"]
ADDED = ["red steel hammer", "green garden hose reel", "quartz wristwatch"]  # a twin of 0, a near 2, nothing alike
# 0 -> 2 -> 1 and 3 -> 0: item 4 has no counts, so it lends nothing.
SEQS = [Sequence("u", (0, 2, 1), (1.0, 1.0, 1.0)), Sequence("v", (3, 0), (1.0, 1.0))]


@pytest.fixture
def models():
    text = TextModel.fit(KNOWN, min_df=1).extend(KNOWN, ADDED, min_df=1)
    transition = TransitionModel.fit(SEQS, len(KNOWN)).extended(len(KNOWN) + len(ADDED))
    return transition, text


def test_each_added_item_borrows_from_its_nearest_counted_item_and_a_stranger_borrows_nothing(models):
    transition, text = models
    model = borrowed_transitions(transition, text, len(KNOWN), Borrow(factor=0.5))
    lent = dict(zip(model.borrowers.tolist(), model.lenders.tolist()))
    assert lent == {5: 0, 6: 2}  # the twin of hammer 0, the reel from hose 2; the watch shares no word
    assert model.shares.tolist() == pytest.approx([0.5, 0.5])
    scores = model.scores([3])  # 3 -> 0 only
    assert scores[5].item() == pytest.approx(0.5) and scores[6] < 1e-5 and scores[7] < 1e-5
    assert model.scores([5]).argmax().item() == 2  # the twin leads where hammer 0 leads


def test_shares_split_the_factor_by_cosine_among_neighbours(models):
    transition, text = models
    model = borrowed_transitions(transition, text, len(KNOWN), Borrow(factor=0.5, neighbours=3))
    for item in (5, 6):
        mine = model.borrowers == item
        assert model.shares[mine].sum().item() == pytest.approx(0.5)
        assert 4 not in model.lenders[mine].tolist()  # no counts, nothing to lend


def test_the_served_default_borrows_nothing(models):
    transition, text = models
    assert BORROW.factor == 0.0
    assert borrowed_transitions(transition, text, len(KNOWN), BORROW) is transition
    with pytest.raises(ValueError, match="factor"):
        Borrow(factor=1.5)
