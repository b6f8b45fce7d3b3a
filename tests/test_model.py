"""AgeGenderNet: input contract, freezing by block, ImageNet weights loading."""

from __future__ import annotations

import copy
import urllib.error
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Dataset
from torchvision.models import mobilenet_v2

from agegender.checkpoint import build_meta
from agegender.model import AgeGenderNet, NetConfig, PretrainedWeightsError
from agegender.module import AgeGenderModule


class RandomFaces(Dataset):
    def __init__(self, count: int = 16, size: int = 32) -> None:
        generator = torch.Generator().manual_seed(0)
        self.images = torch.randint(
            0, 256, (count, 3, size, size), dtype=torch.uint8, generator=generator
        )
        self.ages = torch.randint(1, 81, (count,), generator=generator).float()
        self.genders = torch.randint(0, 2, (count,), generator=generator).float()

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"image": self.images[i], "age": self.ages[i], "gender": self.genders[i]}


def fit_a_few_steps(trainable_from: int | None) -> tuple[AgeGenderModule, dict, dict]:
    torch.manual_seed(0)
    net = NetConfig()
    module = AgeGenderModule(
        net=net.to_dict(),
        meta=build_meta(net, 32, (1, 80), "test"),
        optim={"optimizer": {"_target_": "torch.optim.Adam", "_partial_": True, "lr": 1e-2}},
        trainable_from=trainable_from,
    )
    before_features = copy.deepcopy(module.net.features.state_dict())
    before_neck = copy.deepcopy(module.net.neck.state_dict())
    trainer = L.Trainer(
        max_steps=3,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    trainer.fit(module, DataLoader(RandomFaces(), batch_size=8))
    return module, before_features, before_neck


def test_frozen_training_leaves_backbone_and_bn_statistics_bit_identical() -> None:
    module, before, before_neck = fit_a_few_steps(trainable_from=None)
    after = module.net.features.state_dict()
    assert before.keys() == after.keys()
    assert any("running_mean" in k for k in after)
    for key in before:
        assert torch.equal(before[key], after[key]), key
    assert not all(torch.equal(before_neck[k], v) for k, v in module.net.neck.state_dict().items())


def test_finetune_unfreezes_exactly_features_10_onwards() -> None:
    net = AgeGenderNet()
    net.freeze_blocks(10)
    net.train()
    for index, block in enumerate(net.features):
        grads = {p.requires_grad for p in block.parameters()}
        assert grads == {index >= 10}, index
        batch_norms = [m for m in block.modules() if isinstance(m, torch.nn.BatchNorm2d)]
        assert batch_norms and all(m.training == (index >= 10) for m in batch_norms), index
    assert all(p.requires_grad for p in net.neck.parameters())
    assert all(p.requires_grad for p in net.age_head.parameters())


def test_finetune_training_changes_only_unfrozen_blocks() -> None:
    module, before, _ = fit_a_few_steps(trainable_from=10)
    after = module.net.features.state_dict()
    changed = {key.split(".")[0] for key in before if not torch.equal(before[key], after[key])}
    assert changed and all(int(block) >= 10 for block in changed)


def test_pixels_are_normalised_inside_the_network() -> None:
    net = AgeGenderNet().eval()
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)  # ImageNet, written out here
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    # a pixel at the channel mean maps to 0, one a standard deviation above it to 1
    np.testing.assert_allclose(net.normalize(255 * mean).flatten(), 0.0, atol=1e-5)
    np.testing.assert_allclose(net.normalize(255 * (mean + std)).flatten(), 1.0, atol=1e-5)
    images = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    expected = (images.float() / 255 - mean) / std
    torch.testing.assert_close(net.normalize(images), expected, atol=1e-5, rtol=1e-5)
    # the forward pass uses it: the backbone sees normalised pixels, whatever the input dtype
    seen = []
    hook = net.features.register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    with torch.no_grad():
        net(images)
    hook.remove()
    torch.testing.assert_close(seen[0].float(), expected, atol=1e-5, rtol=1e-5)


def test_offline_imagenet_download_gives_a_clear_message(monkeypatch: pytest.MonkeyPatch) -> None:
    def offline(*args: object, **kwargs: object) -> None:
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    with pytest.raises(PretrainedWeightsError) as error:
        AgeGenderNet().load_pretrained("imagenet")
    message = str(error.value)
    assert "mobilenet_v2-b0353104.pth" in message
    assert "model.weights=PATH" in message and "model.pretrained=none" in message


def test_local_weights_file_loads_through_the_same_path(tmp_path: Path) -> None:
    torch.manual_seed(1)
    reference = mobilenet_v2()
    weights = tmp_path / "mobilenet_v2-b0353104.pth"
    torch.save(reference.state_dict(), weights)
    net = AgeGenderNet()
    net.load_pretrained("imagenet", weights=weights)
    for key, value in reference.features.state_dict().items():
        assert torch.equal(net.features.state_dict()[key], value)


def test_bad_weights_file_and_bad_setting_are_clear(tmp_path: Path) -> None:
    with pytest.raises(PretrainedWeightsError, match="no such file"):
        AgeGenderNet().load_pretrained("imagenet", weights=tmp_path / "missing.pth")
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a state dict")
    with pytest.raises(PretrainedWeightsError, match="not a readable state dict"):
        AgeGenderNet().load_pretrained("imagenet", weights=junk)
    with pytest.raises(ValueError, match="imagenet' or 'none"):
        AgeGenderNet().load_pretrained("coco")


def test_pretrained_none_downloads_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", pytest.fail)
    AgeGenderNet().load_pretrained("none")
