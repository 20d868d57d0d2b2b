import torch

from diffusion_core.masks import block_causal_mask, causal_mask, two_stream_mask


def test_block_causal_mask_sees_own_block_and_earlier():
    ids = torch.tensor([0, 0, 1, 1, 1, 2])
    m = block_causal_mask(ids)
    assert m[0].tolist() == [True, True, False, False, False, False]
    assert m[2].tolist() == [True, True, True, True, True, False]
    assert m[5].all()


def test_causal_mask_is_lower_triangular():
    m = causal_mask(4)
    assert torch.equal(m, torch.ones(4, 4, dtype=torch.bool).tril())


def test_two_stream_mask_noisy_sees_earlier_clean_blocks_and_own_noisy_block():
    block_ids = torch.tensor([0, 0, 1, 1, 2, 2])
    noisy_index = torch.tensor([2, 3, 4, 5])  # copies of blocks 1 and 2
    m = two_stream_mask(block_ids, noisy_index)
    assert m.shape == (10, 10)
    # clean part is plain block-causal and never sees noisy tokens
    assert torch.equal(m[:6, :6], block_causal_mask(block_ids))
    assert not m[:6, 6:].any()
    # noisy copy of position 2 (block 1): clean block 0 only, noisy block 1 only
    row = m[6]
    assert row[:6].tolist() == [True, True, False, False, False, False]
    assert row[6:].tolist() == [True, True, False, False]
    # noisy copy of position 4 (block 2): clean blocks 0 and 1
    row = m[8]
    assert row[:6].tolist() == [True, True, True, True, False, False]
    assert row[6:].tolist() == [False, False, True, True]
