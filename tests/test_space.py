"""The `space` package: Ghost modules, MCA, GhostNet builder, configs, search space, cost.

Kept fast for 2-core CI: one 224^2 model (the paper check), everything else
at 32^2, cost counts under no_grad, built models cached per module.
"""
from __future__ import annotations

import json
import math

import optuna
import pytest
import torch
from torch import nn

from space import (N_BLOCKS, PRESETS, ArchConfig, SearchSpace, build_model, count_macs, count_params,
                   get_preset, load_arch, thop_macs)
from space.cost import count_macs_by_module
from space.ghost import GhostBottleneck, GhostModule
from space.mca import MCA, clip_kernel, num_heads

optuna.logging.set_verbosity(optuna.logging.WARNING)

PAPER_PARAMS = 5.18e6   # GhostNet 1.0x, Table 7
PAPER_MACS = 141e6
SELECTIVE = "0000011111100000"


def conv_weights(module: nn.Module) -> int:
    return sum(m.weight.numel() for m in module.modules() if isinstance(m, nn.Conv2d))


def mca_analytic_macs(channels: int, side: int, kernels_used: tuple[int, ...], local: int, heads: int) -> int:
    """MACs of one MCA block by hand: local dw conv, strips, qkv, channel attention, projection."""
    hw = side * side
    return (channels * local * local * hw              # local depthwise k x k
            + sum(2 * channels * k * hw for k in kernels_used)  # 1 x k and k x 1 depthwise per scale
            + 3 * channels * channels * hw             # q, k, v 1x1 convs
            + 2 * channels * channels // heads * hw    # q k^T and attn v, per head (C/h)^2 HW, h heads
            + channels * channels * hw)                # output projection


@pytest.fixture(scope="module")
def imagenet_ghostnet() -> nn.Module:
    return build_model(get_preset("ghostnet"), num_classes=1000, input_size=224, stem_stride=2)


@pytest.fixture(scope="module")
def cifar_macs() -> dict[str, int]:
    """MACs at 32^2 of the presets and of GhostNet at s = 3, 4 (each model built once)."""
    configs = dict(PRESETS)
    for s in (3, 4):
        configs[f"ghostnet_s{s}"] = ArchConfig(mca=(False,) * N_BLOCKS, ratio=s)
    return {name: count_macs(build_model(cfg), (1, 3, 32, 32)) for name, cfg in configs.items()}


# ----------------------------------------------------------------- paper figures
def test_ghostnet_imagenet_matches_paper_table7(imagenet_ghostnet: nn.Module) -> None:
    params = count_params(imagenet_ghostnet)
    macs = count_macs(imagenet_ghostnet, (1, 3, 224, 224))
    assert abs(params - PAPER_PARAMS) <= 0.005 * PAPER_PARAMS, params
    assert abs(macs - PAPER_MACS) <= 0.01 * PAPER_MACS, macs


def test_thop_agrees_with_aten_count_without_attention(imagenet_ghostnet: nn.Module) -> None:
    # No MCA: every MAC is in a Conv2d / Linear, so both tools must agree exactly.
    assert thop_macs(imagenet_ghostnet, 224) == count_macs(imagenet_ghostnet, 224)


def test_aten_count_includes_attention_matmuls_that_thop_misses() -> None:
    model = build_model(get_preset("all_mca"))
    gap = count_macs(model, 32) - thop_macs(model, 32)
    expected = sum(2 * b["out_channels"] ** 2 // b["heads"] * b["resolution"] ** 2
                   for b in model.blocks_info if b["mca"])
    assert gap == expected > 0


def test_imagenet_layout_resolutions(imagenet_ghostnet: nn.Module) -> None:
    res = [b["resolution"] for b in imagenet_ghostnet.blocks_info]
    assert res == [112, 56, 56, 28, 28] + [14] * 6 + [7] * 5
    assert [b["out_channels"] for b in imagenet_ghostnet.blocks_info][-1] == 160
    assert imagenet_ghostnet(torch.zeros(1, 3, 224, 224)).shape == (1, 1000)


# ----------------------------------------------------------------- Ghost module
@pytest.mark.parametrize("c, n, k, s, d", [(128, 128, 1, 2, 3), (128, 128, 1, 1, 3), (64, 100, 3, 3, 5),
                                           (24, 72, 1, 4, 1)])
def test_ghost_module_weights_follow_paper_formula(c: int, n: int, k: int, s: int, d: int) -> None:
    module = GhostModule(c, n, kernel_size=k, ratio=s, dw_size=d)
    m = math.ceil(n / s)
    assert conv_weights(module) == c * k * k * m + (s - 1) * m * d * d
    assert module(torch.randn(2, c, 8, 8)).shape == (2, n, 8, 8)


def test_ghost_module_paper_example_halves_weights() -> None:
    assert conv_weights(GhostModule(128, 128, kernel_size=1, ratio=2, dw_size=3)) == 8_768
    assert conv_weights(GhostModule(128, 128, kernel_size=1, ratio=1, dw_size=3)) == 16_384


def test_ratio_one_is_a_plain_convolution() -> None:
    module = GhostModule(16, 32, kernel_size=3, ratio=1).eval()
    assert module.cheap_operation is None
    conv, bn, _ = module.primary_conv
    x = torch.randn(1, 16, 6, 6)
    with torch.no_grad():
        assert torch.allclose(module(x), torch.relu(bn(conv(x))))


@pytest.mark.parametrize("cin, cout, stride, identity", [(16, 16, 1, True), (16, 24, 1, False),
                                                         (24, 24, 2, False)])
def test_bottleneck_shapes_and_shortcut(cin: int, cout: int, stride: int, identity: bool) -> None:
    block = GhostBottleneck(cin, 48, cout, dw_kernel_size=5, stride=stride, se_ratio=0.25)
    assert isinstance(block.shortcut, nn.Identity) == identity
    assert block(torch.randn(2, cin, 8, 8)).shape == (2, cout, 8 // stride, 8 // stride)


# ----------------------------------------------------------------- cost ordering
def test_macs_fall_strictly_with_ghost_ratio(cifar_macs: dict[str, int]) -> None:
    assert cifar_macs["ghostnet"] > cifar_macs["ghostnet_s3"] > cifar_macs["ghostnet_s4"]
    assert cifar_macs["cnn"] > cifar_macs["ghostnet"]


def test_macs_order_of_presets(cifar_macs: dict[str, int]) -> None:
    assert cifar_macs["all_mca"] > cifar_macs["selective_mca"] > cifar_macs["ghostnet"] > cifar_macs["ghostnet_s3"]


def test_count_macs_leaves_model_state_alone() -> None:
    model = build_model(get_preset("selective_mca")).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    count_macs(model)
    assert model.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # BN stats untouched


# ----------------------------------------------------------------- forward / backward
def _random_samples(n: int, seed: int = 0) -> list[ArchConfig]:
    space = SearchSpace()
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    return [space.suggest(study.ask()) for _ in range(n)]


@pytest.mark.parametrize("config", [*PRESETS.values(), *_random_samples(3)],
                         ids=[*PRESETS, "random0", "random1", "random2"])
def test_forward_backward_on_cifar_batch(config: ArchConfig) -> None:
    torch.manual_seed(0)
    model = build_model(config, num_classes=10, input_size=32)
    logits = model(torch.randn(2, 3, 32, 32))
    assert logits.shape == (2, 10)
    nn.functional.cross_entropy(logits, torch.tensor([1, 7])).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    mcas = model.mca_modules()
    assert len(mcas) == sum(config.mca)
    for mca in mcas:
        for name, p in mca.named_parameters():
            assert p.grad.abs().sum() > 0, f"no gradient reaches MCA parameter {name}"


# ----------------------------------------------------------------- MCA block
def test_num_heads_rule() -> None:
    assert [num_heads(c) for c in (16, 24, 40, 80, 112, 160, 12)] == [1, 1, 2, 4, 4, 8, 1]


def test_clip_kernel() -> None:
    assert [clip_kernel(k, 2) for k in (3, 5, 7, 21)] == [3, 3, 3, 3]
    assert [clip_kernel(k, 7) for k in (7, 11, 21)] == [7, 11, 13]
    assert clip_kernel(5, 1) == 1


def test_mca_kernels_are_clipped_and_costed_as_clipped() -> None:
    config = ArchConfig(mca=(True,) * N_BLOCKS, kernels=(7, 11, 21))
    model = build_model(config, input_size=32)
    used = {b["resolution"]: tuple(b["kernels_used"]) for b in model.blocks_info}
    assert used == {32: (7, 11, 21), 16: (7, 11, 21), 8: (7, 11, 15), 4: (7, 7, 7), 2: (3, 3, 3)}
    macs = count_macs_by_module(model, 32)
    for info, unit in zip(model.blocks_info, model.blocks):
        mca = unit.mca
        widths = [strip[0].weight.shape[-1] for strip in mca.strips]
        assert tuple(widths) == info["kernels_used"]
        expected = mca_analytic_macs(info["out_channels"], info["resolution"], info["kernels_used"],
                                     mca.local_kernel, mca.heads)
        assert macs[f"blocks.{info['index']}.mca"] == expected, info


def test_mca_cost_is_linear_in_pixels() -> None:
    mca = MCA(32, (3, 5, 7))  # no clipping: same kernels on both sizes
    small = count_macs(mca, (1, 32, 8, 8))
    large = count_macs(mca, (1, 32, 16, 16))
    assert large == 4 * small  # channel attention: O(HW); spatial attention would be O(HW^2)


def test_mca_is_residual_and_keeps_shape() -> None:
    mca = MCA(40, (3, 5, 7), feature_size=8)
    x = torch.randn(2, 40, 8, 8)
    assert mca(x).shape == x.shape
    with torch.no_grad():
        mca.proj.weight.zero_()
        mca.proj.bias.zero_()
        assert torch.equal(mca(x), x)


# ----------------------------------------------------------------- builder
def test_stem_stride_defaults_follow_input_size() -> None:
    cifar = build_model(get_preset("ghostnet"), input_size=32)
    assert cifar.stem_stride == 1 and cifar.final_resolution == 2
    assert build_model(get_preset("ghostnet"), input_size=224).stem_stride == 2


def test_width_multiplier_scales_channels() -> None:
    half = build_model(ArchConfig(mca=(False,) * N_BLOCKS, width=0.5))
    assert [b["out_channels"] for b in half.blocks_info][-1] == 80
    assert all(b["out_channels"] % 4 == 0 and b["expansion"] % 4 == 0 for b in half.blocks_info)
    assert count_params(half) < count_params(build_model(get_preset("ghostnet")))


@pytest.mark.parametrize("kwargs", [dict(input_size=0), dict(num_classes=0), dict(stem_stride=3),
                                    dict(dropout=1.0)])
def test_build_model_rejects_bad_arguments(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        build_model(get_preset("ghostnet"), **kwargs)


# ----------------------------------------------------------------- ArchConfig
def test_key_and_mca_string() -> None:
    cfg = get_preset("selective_mca")
    assert cfg.mca_string == SELECTIVE
    assert cfg.key == f"mca={SELECTIVE}|k=3-5-7|s=2|w=1.0|d=3"
    assert get_preset("cnn").key == "mca=0000000000000000|k=-|s=1|w=1.0|d=3"
    # kernels do not change a model without MCA, so they do not change its key
    assert ArchConfig(mca=(False,) * N_BLOCKS, kernels=(5, 7, 11)).key == get_preset("ghostnet").key


def test_config_normalises_equivalent_spellings() -> None:
    a = ArchConfig(mca=[int(c) for c in SELECTIVE], kernels=[7, 3, 5], ratio=2, width=1)
    b = ArchConfig(mca=SELECTIVE, kernels="3-5-7")
    assert a == b == get_preset("selective_mca") and hash(a) == hash(b)
    assert a.kernels == (3, 5, 7) and isinstance(a.width, float)


def test_json_round_trip(tmp_path) -> None:
    for cfg in [*PRESETS.values(), *_random_samples(2, seed=1)]:
        assert ArchConfig.from_json(cfg.to_json()) == cfg
        assert ArchConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))).key == cfg.key
    path = tmp_path / "best.json"
    PRESETS["selective_mca"].save(path)
    assert ArchConfig.load(path) == PRESETS["selective_mca"]
    assert load_arch(str(path)) == PRESETS["selective_mca"]
    assert load_arch("all_mca") is PRESETS["all_mca"]


BAD_CONFIGS = {
    "placement too short": (lambda: ArchConfig(mca=(True,) * 15), "mca"),
    "placement not bits": (lambda: ArchConfig(mca=(2,) * N_BLOCKS), "mca"),
    "ratio zero": (lambda: ArchConfig(mca=(False,) * N_BLOCKS, ratio=0), "ratio"),
    "ratio too large": (lambda: ArchConfig(mca=(False,) * N_BLOCKS, ratio=9), "ratio"),
    "ratio bool": (lambda: ArchConfig(mca=(False,) * N_BLOCKS, ratio=True), "ratio"),
    "even kernel": (lambda: ArchConfig(mca=(True,) * N_BLOCKS, kernels=(3, 4, 7)), "kernels"),
    "kernel too large": (lambda: ArchConfig(mca=(True,) * N_BLOCKS, kernels=(3, 33)), "kernels"),
    "repeated kernel": (lambda: ArchConfig(mca=(True,) * N_BLOCKS, kernels=(3, 3, 5)), "kernels"),
    "no kernels": (lambda: ArchConfig(mca=(True,) * N_BLOCKS, kernels=()), "kernels"),
    "width zero": (lambda: ArchConfig(mca=(False,) * N_BLOCKS, width=0), "width"),
    "width negative": (lambda: ArchConfig(mca=(False,) * N_BLOCKS, width=-1.0), "width"),
    "even dw_size": (lambda: ArchConfig(mca=(False,) * N_BLOCKS, dw_size=2), "dw_size"),
    "malformed JSON": (lambda: ArchConfig.from_json('{"mca": [true, false'), "JSON"),
    "JSON not an object": (lambda: ArchConfig.from_json("[1, 2]"), "ArchConfig"),
    "unknown field": (lambda: ArchConfig.from_dict({"mca": SELECTIVE, "heads": 4}), "heads"),
    "missing mca": (lambda: ArchConfig.from_dict({"ratio": 2}), "mca"),
    "unknown kernel set": (lambda: SearchSpace().from_params({**SearchSpace().to_params(PRESETS["ghostnet"]),
                                                              "kernels": "3-7-9"}), "kernel set"),
    "unknown preset": (lambda: get_preset("mobilenet"), "selective_mca"),
    "missing arch file": (lambda: load_arch("/nonexistent/best.json"), "preset"),
}


@pytest.mark.parametrize("name", BAD_CONFIGS)
def test_invalid_configs_raise_one_clear_value_error(name: str) -> None:
    make, mentions = BAD_CONFIGS[name]
    with pytest.raises(ValueError) as info:
        make()
    message = str(info.value)
    assert mentions in message and "\n" not in message


def test_config_is_frozen() -> None:
    with pytest.raises(AttributeError):
        PRESETS["ghostnet"].ratio = 3  # type: ignore[misc]


# ----------------------------------------------------------------- presets
def test_presets() -> None:
    assert set(PRESETS) == {"cnn", "ghostnet", "all_mca", "selective_mca"}
    assert PRESETS["cnn"].ratio == 1 and not any(PRESETS["cnn"].mca)
    assert PRESETS["ghostnet"].ratio == 2 and not any(PRESETS["ghostnet"].mca)
    assert all(PRESETS["all_mca"].mca)
    # selective MCA sits on the 1/16-resolution middle stage only
    info = build_model(PRESETS["selective_mca"], num_classes=1000, input_size=224).blocks_info
    assert [b["index"] for b in info if b["mca"]] == [b["index"] for b in info if b["resolution"] == 14]


# ----------------------------------------------------------------- SearchSpace
def test_search_space_suggest_uses_a_fixed_parameter_set() -> None:
    space = SearchSpace()
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=3))
    names = {f"mca_{i}" for i in range(N_BLOCKS)} | {"kernels", "ratio"}
    for _ in range(5):
        trial = study.ask()
        cfg = space.suggest(trial)
        assert set(trial.params) == names
        assert cfg.ratio in space.ratios and cfg.kernels in space.kernel_sets
        assert space.from_params(trial.params) == cfg
        study.tell(trial, 0.0)


def test_to_params_is_what_suggest_gets_back() -> None:
    # points_to_evaluate path: the sampler replays our params, suggest rebuilds the same config
    space = SearchSpace()
    target = ArchConfig(mca=SELECTIVE, kernels=(5, 7, 11), ratio=3)
    study = optuna.create_study()
    study.enqueue_trial(space.to_params(target))
    assert space.suggest(study.ask()) == target


def test_to_params_rejects_configs_outside_the_menu() -> None:
    with pytest.raises(ValueError, match="ratio"):
        SearchSpace().to_params(PRESETS["cnn"])  # s = 1 is not in the default menu
    with pytest.raises(ValueError, match="kernels"):
        SearchSpace().to_params(ArchConfig(mca=SELECTIVE, kernels=(3, 5)))


def test_to_params_maps_kernel_free_configs_onto_the_menu() -> None:
    # without MCA the kernels do not change the model: any menu kernel set expresses it
    space = SearchSpace(kernel_sets=((5, 7, 11),))
    params = space.to_params(PRESETS["ghostnet"])
    assert params["kernels"] == "5-7-11"
    assert space.from_params(params).key == PRESETS["ghostnet"].key


def test_search_space_size_and_validation() -> None:
    assert SearchSpace().size() == (2 ** 16 - 1) * 3 * 3 + 3
    small = SearchSpace(kernel_sets=((3, 5),), ratios=(2,))
    assert small.size() == 2 ** 16
    with pytest.raises(ValueError):
        SearchSpace(ratios=(0, 2))
    with pytest.raises(ValueError):
        SearchSpace(kernel_sets=((3, 5, 7), (7, 5, 3)))
    assert SearchSpace.from_dict(SearchSpace().to_dict()) == SearchSpace()


def test_a_space_from_json_holds_tuples_and_names_unknown_fields():
    """run.json stores the space as JSON lists; a field this version does not know is refused by name."""
    space = SearchSpace.from_dict({"kernel_sets": [[3, 5, 7], [5, 7, 11]], "ratios": [2, 4]})
    assert space.kernel_sets == ((3, 5, 7), (5, 7, 11)) and space.ratios == (2, 4)
    assert hash(space) == hash(SearchSpace(kernel_sets=((3, 5, 7), (5, 7, 11)), ratios=(2, 4)))
    with pytest.raises(ValueError) as err:
        SearchSpace.from_dict({"kernel_sets": [[3, 5, 7]], "bogus": 1, "alpha": 2})
    assert str(err.value) == ("SearchSpace has no field 'alpha', 'bogus'; "
                              "allowed: kernel_sets, ratios, width, dw_size, backbone")
