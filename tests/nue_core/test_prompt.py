import torch

from nue_core.prompt import pack_segments, pad_ids


def _seg(lengths, width, dim=2, base=0.0):
    lens = torch.tensor(lengths)
    emb = torch.arange(len(lengths) * width * dim, dtype=torch.float).view(len(lengths), width, dim) + base
    return emb, lens


def test_right_pad_packs_segments_without_gaps():
    a = _seg([1, 2], 2)
    b = _seg([3, 1], 3, base=100)
    packed = pack_segments([a, b])
    assert packed.embeds.shape == (2, 4, 2)
    assert packed.attention_mask.tolist() == [[1, 1, 1, 1], [1, 1, 1, 0]]
    assert packed.position_ids.tolist() == [[0, 1, 2, 3], [0, 1, 2, 0]]
    assert packed.starts.tolist() == [[0, 1], [0, 2]]
    # item 1: a[1, :2] then b[1, :1]
    assert torch.equal(packed.embeds[1, :2], a[0][1, :2])
    assert torch.equal(packed.embeds[1, 2], b[0][1, 0])
    assert torch.equal(packed.embeds[1, 3], torch.zeros(2))


def test_left_pad_moves_padding_to_the_front():
    packed = pack_segments([_seg([1, 2], 2), _seg([3, 1], 3)], left_pad=True)
    assert packed.attention_mask.tolist() == [[1, 1, 1, 1], [0, 1, 1, 1]]
    assert packed.position_ids.tolist() == [[0, 1, 2, 3], [0, 0, 1, 2]]
    assert packed.starts.tolist() == [[0, 1], [1, 3]]


def test_gradients_flow_into_every_segment():
    a = torch.randn(2, 2, 3, requires_grad=True)
    b = torch.randn(2, 3, 3, requires_grad=True)
    packed = pack_segments([(a, torch.tensor([2, 1])), (b, torch.tensor([1, 3]))])
    packed.embeds.sum().backward()
    assert a.grad[0].abs().sum() > 0 and a.grad[1, 1].abs().sum() == 0
    assert b.grad[1].abs().sum() > 0 and b.grad[0, 1:].abs().sum() == 0


def test_pad_ids():
    ids, lens = pad_ids([[5, 6, 7], [8]], pad_id=0)
    assert ids.tolist() == [[5, 6, 7], [8, 0, 0]] and lens.tolist() == [3, 1]
