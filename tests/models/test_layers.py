import torch
from einops import rearrange

from avssl.models.layers import Attention, Block, DropPath, JointBlock, run_blocks


def test_attention_matches_explicit_softmax():
    torch.manual_seed(0)
    attn = Attention(dim=16, num_heads=4)
    x = torch.randn(2, 7, 16)
    q, k, v = rearrange(attn.qkv(x), "b n (three h d) -> three b h n d", three=3, h=4)
    weights = (q @ k.transpose(-1, -2) / 4 ** 0.5).softmax(dim=-1)
    expected = attn.proj(rearrange(weights @ v, "b h n d -> b n (h d)"))
    torch.testing.assert_close(attn(x), expected, rtol=1e-5, atol=1e-5)


def test_joint_block_shares_weights_but_not_norms():
    torch.manual_seed(0)
    block = JointBlock(dim=16, num_heads=2)
    with torch.no_grad():
        block.norm1_a.weight.fill_(2.0)
        block.norm1_v.bias.fill_(0.5)
    x = torch.randn(2, 5, 16)
    outputs = {s: block(x, stream=s) for s in ("av", "a", "v")}
    assert not torch.allclose(outputs["a"], outputs["av"]) and not torch.allclose(outputs["v"], outputs["av"])
    plain = Block(dim=16, num_heads=2)
    stream_norms = ("_a.weight", "_a.bias", "_v.weight", "_v.bias")
    plain.load_state_dict({k: v for k, v in block.state_dict().items() if not k.endswith(stream_norms)})
    torch.testing.assert_close(plain(x), outputs["av"])


def test_drop_path_identity_in_eval_and_drops_whole_samples_in_train():
    torch.manual_seed(0)
    drop = DropPath(0.5)
    x = torch.ones(64, 3, 4)
    assert torch.equal(drop.eval()(x), x)
    out = drop.train()(x)
    per_sample = out.reshape(64, -1)
    assert set(per_sample.unique().tolist()) == {0.0, 2.0}
    assert torch.all(per_sample.min(dim=1).values == per_sample.max(dim=1).values)


def test_grad_checkpointing_gives_the_same_gradients():
    torch.manual_seed(0)
    blocks = torch.nn.ModuleList(JointBlock(16, 2) for _ in range(2))
    x = torch.randn(2, 5, 16)
    grads = []
    for checkpointing in (False, True):
        blocks.zero_grad()
        run_blocks(blocks, x, grad_checkpointing=checkpointing, stream="v").square().sum().backward()
        grads.append([p.grad.clone() for p in blocks.parameters() if p.grad is not None])
    assert len(grads[0]) == len(grads[1]) > 0
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b)
