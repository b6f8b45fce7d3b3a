"""The frozen blocks on onnxruntime compute what torch computes, and follow the weights."""

from __future__ import annotations

import copy
import pickle
from collections.abc import Iterator

import pytest
import torch

from agegender.bench.workload import torch_threads
from agegender.model import AgeGenderNet, NetConfig
from agegender.scenes import calibrate_batchnorm

SIZE = 32
FROZEN = 4  # the default finetune's first trainable block


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    with torch_threads(1):
        yield


def faces(count: int = 16, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (count, 3, SIZE, SIZE), dtype=torch.uint8, generator=generator)


def fitted_net(seed: int = 0, dropout: float = 0.3) -> AgeGenderNet:
    """A random network whose BatchNorm statistics fit the faces: its features then depend on
    the face, as ImageNet weights' do (default statistics give nearly one answer for all)."""
    torch.manual_seed(seed)
    net = AgeGenderNet(NetConfig(age_head="distribution", dropout=dropout))
    net.freeze_blocks(None)
    calibrate_batchnorm(net, faces(32, seed=seed + 1))
    net.freeze_blocks(FROZEN)
    return net.eval()


def on_onnxruntime(net: AgeGenderNet) -> AgeGenderNet:
    twin = copy.deepcopy(net)
    twin.run_frozen_blocks_on("onnxruntime")
    return twin


def test_onnxruntime_blocks_give_the_torch_features() -> None:
    net = fitted_net()
    twin = on_onnxruntime(net)
    images = faces()
    with torch.no_grad():
        expected, got = net.embed(images), twin.embed(images)
    assert twin.frozen_runner is not None and twin.frozen_runner._session is not None
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)
    assert (expected[0] - expected[1]).abs().max() > 1e-2  # the features depend on the face


def test_training_step_gradients_match_torch() -> None:
    # No dropout, and BatchNorm on its fitted statistics: a random network normalising each
    # batch by its own statistics turns a rounding difference of 1e-6 in its input into
    # gradients a tenth apart (torch against itself), which would test nothing.
    net = fitted_net(dropout=0.0)
    twin = on_onnxruntime(net)
    images, ages = faces(), torch.linspace(1, 80, 16)
    for model in (net, twin):
        age, logit = model(images)
        ((age - ages).abs().mean() + logit.mean()).backward()
    learned = 0
    for (name, expected), got in zip(net.named_parameters(), twin.parameters(), strict=True):
        assert (expected.grad is None) == (got.grad is None), name
        if expected.grad is not None:
            torch.testing.assert_close(got.grad, expected.grad, atol=1e-4, rtol=1e-3)
            learned += 1
        if name.startswith(f"features.{FROZEN}."):
            assert expected.grad is not None  # the first trainable block learns
    assert learned > 0
    assert all(p.grad is None for p in twin.features[:FROZEN].parameters())


def test_new_weights_in_the_frozen_blocks_are_followed() -> None:
    twin = on_onnxruntime(fitted_net(seed=0))
    images = faces()
    with torch.no_grad():
        before = twin.embed(images)
        other = fitted_net(seed=5)
        twin.load_state_dict(other.state_dict())  # what loading a checkpoint does
        after, expected = twin.embed(images), other.embed(images)
    torch.testing.assert_close(after, expected, atol=1e-3, rtol=1e-3)
    assert (after - before).abs().max() > 5e-2


def test_the_network_keeps_its_mode_and_can_be_copied() -> None:
    twin = on_onnxruntime(fitted_net())
    images = faces()
    with torch.no_grad():
        first = twin.embed(images)  # builds the session while the network is in eval mode
    assert not any(module.training for module in twin.modules())
    for copied in (copy.deepcopy(twin), pickle.loads(pickle.dumps(twin))):
        assert copied.frozen_runner is not None
        with torch.no_grad():
            torch.testing.assert_close(copied.embed(images), first, atol=1e-5, rtol=1e-5)


@pytest.mark.filterwarnings("ignore:`torch.jit.trace")
def test_torch_runs_the_blocks_when_they_learn_or_are_traced() -> None:
    net = fitted_net()
    twin = on_onnxruntime(net)
    twin.freeze_blocks(0)  # nothing frozen: nothing to hand over
    with torch.no_grad():
        twin.embed(faces(2))
    assert twin.frozen_runner._session is None
    # an export traces torch's own operations, never the runner
    twin.freeze_blocks(FROZEN)
    with torch.no_grad():
        traced = torch.jit.trace(twin.eval(), (faces(2),), check_trace=False)
    assert twin.frozen_runner._session is None
    with torch.no_grad():
        torch.testing.assert_close(traced(faces())[0], net(faces())[0], atol=1e-4, rtol=1e-4)


def test_an_unknown_runtime_is_refused() -> None:
    with pytest.raises(ValueError, match="onnxruntime"):
        AgeGenderNet().run_frozen_blocks_on("tensorrt")


def test_building_the_session_leaves_the_random_stream_alone() -> None:
    twin = on_onnxruntime(fitted_net())
    state = torch.random.get_rng_state()
    with torch.no_grad():
        twin.embed(faces(2))
    assert twin.frozen_runner._session is not None
    assert torch.equal(torch.random.get_rng_state(), state)  # dropout masks and shuffles stay


def test_a_bf16_autocast_step_gets_fp32_blocks() -> None:
    # trainer=cpu_bf16 trains under autocast; the exported blocks must stay fp32
    net = fitted_net()
    twin = on_onnxruntime(net)
    images = faces()
    with torch.no_grad():
        expected = net.features[:FROZEN](net.normalize(images))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            got = twin.frozen_runner(twin, FROZEN, images)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)
