"""The optimiser and learning-rate schedules the module builds from the composed `optim`
config (Hydra partials): one cycle by default, the plateau for experiment=original."""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf

from agegender.checkpoint import build_meta
from agegender.configs import compose_config
from agegender.model import NetConfig
from agegender.module import AgeGenderModule


def optim_config(*overrides: str) -> dict:
    cfg = compose_config("train", *overrides)
    return OmegaConf.to_container(cfg.optim, resolve=True)  # type: ignore[return-value]


def module(optim: dict | None) -> AgeGenderModule:
    net = NetConfig()
    return AgeGenderModule(net.to_dict(), build_meta(net, 64, (1, 80), "frozen"), optim=optim)


def test_default_finetune_runs_one_cycle_to_its_own_rate_on_one_parameter_group(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    model = module(optim_config("phase=finetune"))
    monkeypatch.setattr(model, "_total_steps", lambda: 50)
    config = model.configure_optimizers()
    optimizer, schedule = config["optimizer"], config["lr_scheduler"]
    assert isinstance(schedule["scheduler"], torch.optim.lr_scheduler.OneCycleLR)
    assert schedule["interval"] == "step"
    assert len(optimizer.param_groups) == 1  # one rate for all: older last.ckpt files resume
    rates = []
    for _ in range(50):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule["scheduler"].step()
    # finetune.lr is the peak; the frozen phase keeps its own rate
    assert max(rates) == pytest.approx(6e-4, rel=1e-3)
    assert optim_config()["lr"] == pytest.approx(1e-3)


def test_cosine_anneals_from_lr_to_min_lr_over_the_epochs() -> None:
    optim = optim_config("phase=finetune", "schedule=cosine", "finetune.epochs=4")
    config = module(optim).configure_optimizers()
    optimizer, schedule = config["optimizer"], config["lr_scheduler"]
    assert isinstance(optimizer, torch.optim.Adam) and schedule["interval"] == "epoch"
    rates = [optimizer.param_groups[0]["lr"]]
    for _ in range(4):
        optimizer.step()
        schedule["scheduler"].step()
        rates.append(optimizer.param_groups[0]["lr"])
    assert rates[0] == pytest.approx(6e-4) and rates[-1] == pytest.approx(1e-6)
    assert all(a > b for a, b in zip(rates[:-1], rates[1:], strict=True))  # falls each epoch
    # halfway, the cosine's midpoint: the mean of the two ends
    assert rates[2] == pytest.approx((6e-4 + 1e-6) / 2)


def test_the_optimizer_is_built_only_over_trainable_parameters() -> None:
    net = NetConfig()
    model = AgeGenderModule(
        net.to_dict(),
        build_meta(net, 64, (1, 80), "frozen"),
        optim=optim_config("optim.weight_decay=0.01"),
        trainable_from=None,
    )
    optimizer = model.configure_optimizers()
    assert isinstance(optimizer, torch.optim.Adam)  # the frozen phase has no schedule
    group = optimizer.param_groups[0]
    assert group["lr"] == pytest.approx(1e-3) and group["weight_decay"] == pytest.approx(0.01)
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    assert {id(p) for p in group["params"]} == trainable
    assert len(trainable) < len(list(model.parameters()))  # the backbone is frozen


def test_experiment_original_lowers_the_rate_on_a_validation_loss_plateau() -> None:
    config = module(optim_config("phase=finetune", "experiment=original")).configure_optimizers()
    schedule = config["lr_scheduler"]
    assert isinstance(schedule["scheduler"], torch.optim.lr_scheduler.ReduceLROnPlateau)
    assert schedule["monitor"] == "val/loss"
    assert schedule["scheduler"].factor == pytest.approx(0.2)
    assert config["optimizer"].param_groups[0]["lr"] == pytest.approx(1e-4)  # the recipe's rate


def test_another_optimizer_and_no_schedule_by_config_alone() -> None:
    optim = optim_config(
        "phase=finetune",
        "schedule=none",
        "optim.optimizer._target_=torch.optim.SGD",
        "+optim.optimizer.momentum=0.9",
        "optim.weight_decay=0.0",
    )
    optimizer = module(optim).configure_optimizers()
    assert isinstance(optimizer, torch.optim.SGD)
    assert optimizer.param_groups[0]["momentum"] == pytest.approx(0.9)


def test_a_module_built_without_optim_uses_adam() -> None:
    assert isinstance(module(None).configure_optimizers(), torch.optim.Adam)


def test_backbone_blocks_learn_at_a_scaled_rate_and_the_heads_at_the_full_one() -> None:
    optim = optim_config(
        "phase=finetune", "schedule=cosine", "optim.lr=1e-3", "optim.backbone_lr_scale=0.1"
    )
    net = NetConfig()
    model = AgeGenderModule(
        net.to_dict(), build_meta(net, 64, (1, 80), "frozen"), optim=optim, trainable_from=10
    )
    config = model.configure_optimizers()
    optimizer = config["optimizer"]
    backbone = {id(p) for p in model.net.features.parameters() if p.requires_grad}
    rates = {}
    for group in optimizer.param_groups:
        ids = {id(p) for p in group["params"]}
        rates["backbone" if ids <= backbone else "heads"] = group["lr"]
        assert ids <= backbone or not ids & backbone  # no group mixes the two
    assert rates == pytest.approx({"backbone": 1e-4, "heads": 1e-3})
    # the cosine anneals both groups from their own starting rate
    for _ in range(10):
        optimizer.step()
        config["lr_scheduler"]["scheduler"].step()
    assert [g["lr"] for g in optimizer.param_groups] == pytest.approx([1e-6, 1e-6])


def test_one_cycle_warms_up_to_each_groups_rate_and_steps_every_batch(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    optim = optim_config(
        "phase=finetune", "schedule=onecycle", "optim.lr=1e-3", "optim.backbone_lr_scale=0.5"
    )
    net = NetConfig()
    model = AgeGenderModule(
        net.to_dict(), build_meta(net, 64, (1, 80), "frozen"), optim=optim, trainable_from=16
    )
    monkeypatch.setattr(model, "_total_steps", lambda: 100)
    config = model.configure_optimizers()
    optimizer, schedule = config["optimizer"], config["lr_scheduler"]
    assert isinstance(schedule["scheduler"], torch.optim.lr_scheduler.OneCycleLR)
    assert schedule["interval"] == "step"
    history = []
    for _ in range(100):
        history.append([g["lr"] for g in optimizer.param_groups])
        optimizer.step()
        schedule["scheduler"].step()
    heads, backbone = zip(*history, strict=True)
    assert heads[0] == pytest.approx(1e-3 / 25) and backbone[0] == pytest.approx(0.5e-3 / 25)
    assert max(heads) == pytest.approx(1e-3, rel=1e-3)
    assert max(backbone) == pytest.approx(0.5e-3, rel=1e-3)
    assert heads.index(max(heads)) in range(28, 32)  # the peak at 30 % of the batches
    assert heads[-1] < 1e-3 / 1000
