import torch

from recast.text import TextModel
from recast.text_init import add_text_to_embeddings, item_vectors, token_vectors

from .helpers import tiny_policy

TEXTS = ["red cordless drill", "red drill bits", "blue saw blade", "blue saw", "epoxy glue", "glue stick", "red saw"]


def test_item_vectors_are_the_top_singular_directions():
    text = TextModel.fit(TEXTS, min_df=1)
    vectors = item_vectors(text, 3, torch.Generator().manual_seed(0))
    dense = text._by_item.to_dense()
    U, S, _ = torch.linalg.svd(dense, full_matrices=False)
    expected = U[:, :3] * S[:3]
    for j in range(3):  # each direction up to its sign
        sign = torch.sign((vectors[:, j] * expected[:, j]).sum())
        assert torch.allclose(vectors[:, j] * sign, expected[:, j], atol=1e-4)
    assert item_vectors(text, 3, torch.Generator().manual_seed(1)).abs().allclose(vectors.abs(), atol=1e-4)


def test_token_vectors_are_residual_means_by_level():
    codes = torch.tensor([[4, 6], [4, 7], [5, 6]])
    vecs, used = token_vectors(codes, torch.tensor([[1.0, 0.0], [3.0, 2.0], [10.0, 4.0]]), 8)
    assert vecs[4].tolist() == [2.0, 1.0] and vecs[5].tolist() == [10.0, 4.0]
    # level 1: residuals (-1, -1), (1, 1), (0, 0); token 6 holds items 0 and 2
    assert vecs[6].tolist() == [-0.5, -0.5] and vecs[7].tolist() == [1.0, 1.0]
    assert not used[:4].any() and vecs[:4].abs().sum() == 0


def test_text_is_added_to_used_token_rows_only():
    codes = torch.tensor([[4, 8], [4, 9], [5, 8], [5, 10]])
    model = tiny_policy(12, seed=0)
    embed, head = model.model.embed_tokens.weight.clone(), model.lm_head.weight.clone()
    add_text_to_embeddings(model, codes, torch.randn(4, 16, generator=torch.Generator().manual_seed(0)), 1.0)
    changed = (model.model.embed_tokens.weight != embed).any(dim=1)
    assert changed[[4, 5, 8, 9, 10]].all() and not changed[:4].any() and not changed[[6, 7, 11]].any()
    assert torch.allclose(model.model.embed_tokens.weight - embed, model.lm_head.weight - head, atol=1e-6)
    added = (model.model.embed_tokens.weight - embed)[[4, 5, 8, 9, 10]]
    assert abs(added.std().item() - 0.02) < 1e-3  # scaled to the init's standard deviation
