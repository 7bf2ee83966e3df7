"""The GhostNet paper's other systems: VGG-16, ResNet-56, ResNet-50, `ghostify`, and MCA on each.

Paper figures (Han et al. 2020, Tables 3-6; FLOPs are multiply-accumulates)
are checked within 2 %, baselines within 1 %.  Cost counts run on the meta
device (shapes only, no weights, no arithmetic), so even ResNet-50 at 224^2
costs a fraction of a second; one test checks that meta and CPU counts agree.
Forward passes run on CPU at each backbone's CIFAR size, ResNet-50 at 64^2.
"""
from __future__ import annotations

import json

import optuna
import pytest
import torch
import torchvision
from torch import nn

from space import (BACKBONE_NAMES, BACKBONES, PRESETS, ArchConfig, GhostConv2d, GhostLinear, SearchSpace,
                   build_model, count_macs, count_params, get_preset, ghostify, load_arch, mca_length, presets_for)
from space.describe import describe, main

optuna.logging.set_verbosity(optuna.logging.WARNING)
ALLOWED = "ghostnet, vgg16, resnet56, resnet50"


def arch(backbone: str, ratio: int, dw_size: int = 3) -> ArchConfig:
    return ArchConfig(mca=(False,) * mca_length(backbone), ratio=ratio, dw_size=dw_size, backbone=backbone)


def cost(config: ArchConfig) -> tuple[int, int]:
    """(params, MACs) at the backbone's default input size, built on the meta device."""
    with torch.device("meta"):
        model = build_model(config)
    return count_params(model), count_macs(model)


def close(value: float, paper: float, tol: float) -> bool:
    return abs(value - paper) <= tol * paper


# ------------------------------------------------------------------ paper figures
# (backbone, s, d): (params, MACs) as printed in the paper
PAPER = {
    ("vgg16", 2, 3): (7.7e6, 158e6),   # Table 4 (s) / Table 3 (d); d = 3 everywhere after Table 3
    ("vgg16", 3, 3): (5.2e6, 107e6),
    ("vgg16", 4, 3): (4.0e6, 80e6),
    ("vgg16", 5, 3): (3.3e6, 65e6),
    ("vgg16", 2, 1): (7.6e6, 157e6),
    ("vgg16", 2, 5): (7.7e6, 160e6),
    ("vgg16", 2, 7): (7.7e6, 163e6),
    ("resnet50", 4, 3): (6.5e6, 1.2e9),  # Table 6
}
BASELINES = {"vgg16": (15.0e6, 313e6), "resnet56": (0.85e6, 125e6), "resnet50": (25.6e6, 4.1e9)}


@pytest.mark.parametrize("backbone", BASELINES)
def test_baselines_match_paper_within_1_percent(backbone: str) -> None:
    params, macs = cost(arch(backbone, 1))
    paper_params, paper_macs = BASELINES[backbone]
    assert close(params, paper_params, 0.01) and close(macs, paper_macs, 0.01), (params, macs)


@pytest.mark.parametrize("key", PAPER, ids=[f"{b}-s{s}-d{d}" for b, s, d in PAPER])
def test_ghost_versions_match_paper_within_2_percent(key: tuple[str, int, int]) -> None:
    params, macs = cost(arch(*key))
    paper_params, paper_macs = PAPER[key]
    assert close(params, paper_params, 0.02) and close(macs, paper_macs, 0.02), (params, macs)


def test_ghost_resnet56_table5() -> None:
    # Paper: 0.43 M / 63 M.  With d = 3, the cheap op the paper says it uses from Table 3 on, every
    # faithful reading (stem ghosted or not, BN in the cheap op or not) lands at 65.1-65.3 M MACs
    # (+3.4 %): ResNet-56's thin 16-channel stage makes the 3x3 depthwise ghosts cost 1/16 of its
    # primary convs.  The paper's pair is reproduced exactly with d = 1 (0.430 M / 63.01 M), which is
    # what we take it to have measured; see NOTES-issue13.md.
    params, macs = cost(arch("resnet56", 2, 3))
    assert close(params, 0.43e6, 0.02)
    assert macs == 65_139_328  # measured; 3.4 % above the paper's 63 M
    params, macs = cost(arch("resnet56", 2, 1))
    assert close(params, 0.43e6, 0.01) and close(macs, 63e6, 0.01), (params, macs)


def test_ghost_resnet50_table6_s2() -> None:
    # Paper: 13.0 M / 2.2 B.  Parameters match with the classifier ghosted (the resnet50 Ghost rule).
    # MACs: every faithful reading measures <= 2.150 B (stem kept plain, as in Huawei's released
    # Ghost-ResNet-50; ghosting the stem too gives 2.096 B), 2.3 % under the two-digit "2.2 B"
    # (s = 4 measures 1.180 B against 1.2 B, -1.6 %).  See NOTES-issue13.md.
    params, macs = cost(arch("resnet50", 2))
    assert close(params, 13.0e6, 0.01), params
    assert macs == 2_149_999_860  # measured; 2.3 % under the paper's 2.2 B


def test_meta_device_counts_equal_cpu_counts() -> None:
    config = get_preset("all_mca", "resnet56")
    cpu = build_model(config)
    assert cost(config) == (count_params(cpu), count_macs(cpu))


def test_resnet50_is_torchvision_resnet50_and_ghostify_agrees() -> None:
    with torch.device("meta"):
        tv_plain = torchvision.models.resnet50()
        tv_ghost = ghostify(torchvision.models.resnet50(), 2, 3, linear=True)
    assert cost(arch("resnet50", 1)) == (count_params(tv_plain), count_macs(tv_plain, 224))
    assert cost(arch("resnet50", 2)) == (count_params(tv_ghost), count_macs(tv_ghost, 224))


def test_count_macs_uses_the_size_the_model_was_built_for() -> None:
    with torch.device("meta"):
        model = build_model(get_preset("ghost", "resnet50"), input_size=64)
    assert model.input_size == 64 and count_macs(model) == count_macs(model, 64) < count_macs(model, 224)


# ------------------------------------------------------------------ ghostify
def dense_convs(model: nn.Module) -> list[str]:
    return [n for n, m in model.named_modules() if type(m) is nn.Conv2d and m.groups == 1]


def test_ghostify_torchvision_resnet50_keeps_shapes_and_the_stem() -> None:
    torch.manual_seed(0)
    model = torchvision.models.resnet50(num_classes=10).eval()
    convs = dense_convs(model)
    ghostify(model, 2, 3)
    ghosts = [n for n, m in model.named_modules() if isinstance(m, GhostConv2d)]
    assert ghosts == [n for n in convs if n != "conv1"]  # the 3-channel stem stays plain
    assert type(model.conv1) is nn.Conv2d and type(model.fc) is nn.Linear
    assert model.layer2[0].conv2.primary_conv.stride == (2, 2)
    assert model.layer2[0].downsample[0].primary_conv.kernel_size == (1, 1)
    with torch.no_grad():
        assert model(torch.randn(2, 3, 64, 64)).shape == (2, 10)


@pytest.mark.parametrize("c, n, k, stride, s, d", [(64, 128, 3, 2, 2, 3), (16, 10, 1, 1, 4, 5), (3, 64, 7, 2, 3, 1)])
def test_ghost_conv_is_a_drop_in_for_its_conv(c: int, n: int, k: int, stride: int, s: int, d: int) -> None:
    conv = nn.Conv2d(c, n, k, stride, k // 2, bias=False)
    ghost = GhostConv2d.from_conv(conv, s, d)
    m = -(-n // s)
    assert sum(p.numel() for p in ghost.parameters()) == c * k * k * m + (s - 1) * m * d * d
    x = torch.randn(2, c, 9, 9)
    assert ghost(x).shape == conv(x).shape


def test_ghostify_keep_argument_and_ratio_one() -> None:
    model = build_model(get_preset("plain", "resnet56"))
    assert ghostify(model, 1, 3) is model and not any(isinstance(m, GhostConv2d) for m in model.modules())
    convs = dense_convs(model)
    assert len(convs) == 1 + 2 * 27
    # a collection of names protects exactly those
    kept = {"stem.0", "blocks.0.block.conv1"}
    ghostify(model, 2, 3, keep=kept)
    assert [n for n in dense_convs(model) if n in convs] == sorted(kept, key=convs.index)
    # a predicate sees (name, layer); default: the stem (3 input channels) stays
    model = ghostify(build_model(get_preset("plain", "resnet56")), 3, 3,
                     keep=lambda name, layer: name.startswith("blocks.26"))
    assert {n.rsplit(".", 1)[0] for n in dense_convs(model) if n in convs} == {"blocks.26.block"}
    model = ghostify(build_model(get_preset("plain", "resnet56")), 2, 3)
    assert [n for n in dense_convs(model) if n in convs] == ["stem.0"]


def test_ghostify_leaves_grouped_convs_and_optionally_ghosts_linears() -> None:
    model = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1, groups=8), nn.Conv2d(8, 16, 1), nn.Flatten(),
                          nn.Linear(16 * 4 * 4, 10))
    ghostify(model, 2, 3, keep=lambda name, layer: False)
    assert type(model[0]) is nn.Conv2d and isinstance(model[1], GhostConv2d) and type(model[3]) is nn.Linear
    primary = model[1].primary_conv
    ghostify(model, 2, 3, linear=True)  # a second pass: no ghosts of ghosts, only the Linear is new
    assert isinstance(model[3], GhostLinear) and model[1].primary_conv is primary
    assert model(torch.randn(2, 8, 4, 4)).shape == (2, 10)
    assert sum(p.numel() for p in model[3].parameters()) == 256 * 5 + 5 + 5  # primary (+ bias) + 1 scale per ghost
    with pytest.raises(ValueError, match="ratio"):
        ghostify(model, 0)
    with pytest.raises(ValueError, match="dw_size"):
        ghostify(model, 2, dw_size=2)


@pytest.mark.parametrize("backbone", ["vgg16", "resnet56"])
def test_backbone_ghost_rules(backbone: str) -> None:
    # CIFAR nets: every conv (stem included) is a Ghost module, MCA's own convs stay dense
    model = build_model(get_preset("all_mca", backbone))
    assert [n for n in dense_convs(model) if ".mca." not in n and not n.endswith(".primary_conv")] == []
    assert all(type(mca.qkv) is nn.Conv2d and type(mca.proj) is nn.Conv2d for mca in model.mca_modules())
    assert not any(isinstance(m, (GhostConv2d, GhostLinear)) for m in build_model(get_preset("plain", backbone)).modules())


# ------------------------------------------------------------------ forward with and without MCA
FORWARD = [("ghostnet", "ghostnet", 32), ("ghostnet", "selective_mca", 32),
           ("vgg16", "ghost", 32), ("vgg16", "all_mca", 32),
           ("resnet56", "ghost", 32), ("resnet56", "all_mca", 32),
           ("resnet50", "ghost", 64), ("resnet50", "selective_mca", 64)]


@pytest.mark.parametrize("backbone, preset, size", FORWARD, ids=[f"{b}-{p}" for b, p, _ in FORWARD])
def test_every_backbone_forwards_a_batch(backbone: str, preset: str, size: int) -> None:
    torch.manual_seed(0)
    config = get_preset(preset, backbone)
    model = build_model(config, num_classes=10, input_size=size)
    assert len(model.blocks) == len(model.blocks_info) == mca_length(backbone)
    assert len(model.mca_modules()) == sum(config.mca)
    logits = model(torch.randn(2, 3, size, size))
    assert logits.shape == (2, 10) and torch.isfinite(logits).all()
    if backbone == "resnet56":  # one backward: gradients reach the MCA blocks of a new backbone
        logits.sum().backward()
        assert all(p.grad is not None for mca in model.mca_modules() for p in mca.parameters())


def test_selective_mca_sits_on_the_middle_stage() -> None:
    # (input size, resolution of the middle stage): GhostNet's and ResNet-50's 1/16 stage at 224^2,
    # VGG-16's third of five stages and ResNet-56's second of three at 32^2
    middle = {"ghostnet": (224, 14), "resnet50": (224, 14), "vgg16": (32, 8), "resnet56": (32, 16)}
    for backbone, (size, resolution) in middle.items():
        with torch.device("meta"):
            info = build_model(get_preset("selective_mca", backbone), input_size=size).blocks_info
        placed = [b["index"] for b in info if b["mca"]]
        assert placed == list(BACKBONES[backbone].middle)
        assert placed == [b["index"] for b in info if b["resolution"] == resolution], backbone


def test_mca_kernels_are_clipped_per_backbone() -> None:
    config = ArchConfig(mca=(True,) * 13, kernels=(7, 11, 21), backbone="vgg16")
    with torch.device("meta"):
        info = build_model(config).blocks_info
    assert {b["resolution"]: tuple(b["kernels_used"]) for b in info} == {
        32: (7, 11, 21), 16: (7, 11, 21), 8: (7, 11, 15), 4: (7, 7, 7), 2: (3, 3, 3)}


# ------------------------------------------------------------------ ArchConfig / presets / SearchSpace
def test_ghostnet_keys_and_old_dicts_unchanged(tmp_path) -> None:
    assert get_preset("selective_mca").key == "mca=0000011111100000|k=3-5-7|s=2|w=1.0|d=3"
    old = {"mca": [False] * 16, "kernels": [3, 5, 7], "ratio": 1, "width": 1.0, "dw_size": 3}  # a pre-backbone best.json
    assert ArchConfig.from_dict(old) == PRESETS["cnn"] and ArchConfig.from_dict(old).backbone == "ghostnet"
    path = tmp_path / "best.json"
    path.write_text(json.dumps(old))
    assert load_arch(str(path)).key == "mca=0000000000000000|k=-|s=1|w=1.0|d=3"
    assert PRESETS["cnn"].to_dict() == {**old, "backbone": "ghostnet"}


def test_other_backbones_prefix_their_keys_and_round_trip() -> None:
    config = get_preset("selective_mca", "resnet56")
    assert config.key == "net=resnet56|mca=000000000111111111000000000|k=3-5-7|s=2|w=1.0|d=3"
    assert config.n_blocks == 27 and config.mca_string.count("1") == 9
    for backbone in BACKBONE_NAMES:
        for preset in presets_for(backbone).values():
            assert ArchConfig.from_json(preset.to_json()) == preset
    keys = [p.key for b in BACKBONE_NAMES for p in presets_for(b).values()]
    assert len(set(keys)) == len(keys)


def test_presets_per_backbone_and_load_arch_spellings() -> None:
    assert presets_for("ghostnet") is PRESETS
    for backbone in ("vgg16", "resnet56", "resnet50"):
        presets = presets_for(backbone)
        assert list(presets) == ["plain", "ghost", "all_mca", "selective_mca"]
        assert presets["plain"].ratio == 1 and presets["ghost"].ratio == 2 and not any(presets["ghost"].mca)
        assert all(presets["all_mca"].mca) and presets["selective_mca"].kernels == (3, 5, 7)
        assert load_arch(f"{backbone}:selective_mca") == presets["selective_mca"]
    assert load_arch("ghostnet:cnn") is PRESETS["cnn"] and load_arch("cnn") is PRESETS["cnn"]


BAD = {
    "wrong mca length": (lambda: ArchConfig(mca=(False,) * 16, backbone="resnet56"), ["resnet56", "27"]),
    "ghostnet length": (lambda: ArchConfig(mca=(False,) * 13), ["ghostnet", "16"]),
    "unknown backbone": (lambda: ArchConfig(mca=(False,) * 16, backbone="vgg19"), [ALLOWED]),
    "width on vgg16": (lambda: ArchConfig(mca=(False,) * 13, width=0.5, backbone="vgg16"), ["width", "vgg16"]),
    "preset of unknown backbone": (lambda: get_preset("plain", "vgg19"), [ALLOWED]),
    "ghostnet preset name on resnet": (lambda: get_preset("cnn", "resnet50"), ["plain", "selective_mca"]),
    "load_arch unknown backbone": (lambda: load_arch("vgg19:plain"), [ALLOWED]),
    "load_arch unknown preset": (lambda: load_arch("vgg16:cnn"), ["plain"]),
    "search space backbone": (lambda: SearchSpace(backbone="vgg19"), [ALLOWED]),
    "from_dict missing mca": (lambda: ArchConfig.from_dict({"backbone": "resnet50"}), ["mca", "16", "resnet50"]),
    "stem_stride on resnet": (lambda: build_model(get_preset("plain", "resnet56"), stem_stride=2), ["ghostnet"]),
    "vgg input too small": (lambda: build_model(get_preset("plain", "vgg16"), input_size=16), ["32"]),
}


@pytest.mark.parametrize("name", BAD)
def test_bad_backbone_configs_raise_one_clear_value_error(name: str) -> None:
    make, mentions = BAD[name]
    with pytest.raises(ValueError) as info:
        make()
    message = str(info.value)
    assert all(m in message for m in mentions) and "\n" not in message, message


def test_search_space_over_another_backbone() -> None:
    space = SearchSpace(backbone="resnet56", ratios=(1, 2))
    assert space.n_blocks == 27 and space.size() == (2 ** 27 - 1) * 3 * 2 + 2
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    trial = study.ask()
    config = space.suggest(trial)
    assert config.backbone == "resnet56" and set(trial.params) == {f"mca_{i}" for i in range(27)} | {"kernels", "ratio"}
    assert space.from_params(space.to_params(config)) == config
    assert SearchSpace.from_dict(space.to_dict()) == space
    old = {"kernel_sets": [[3, 5, 7]], "ratios": [2], "width": 1.0, "dw_size": 3}  # a pre-backbone run.json
    assert SearchSpace.from_dict(old).backbone == "ghostnet"
    with pytest.raises(ValueError, match="backbone"):
        space.to_params(PRESETS["ghostnet"])


# ------------------------------------------------------------------ describe
def table_rows(out: str) -> dict[str, list[str]]:
    lines = out.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("block"))
    rows = {}
    for line in lines[header + 1:]:
        if not line.strip():
            break
        rows[line.split()[0]] = line.split()
    return rows


def test_describe_cli_resnet56_rows_add_up(capsys: pytest.CaptureFixture) -> None:
    assert main(["--backbone", "resnet56", "--ratio", "2", "--dw-size", "3"]) == 0
    rows = table_rows(capsys.readouterr().out)
    assert list(rows) == ["stem", *map(str, range(27)), "head", "total"]
    number = lambda text: int(text.replace(",", ""))  # noqa: E731
    parts = [r for name, r in rows.items() if name != "total"]
    assert sum(number(r[-2]) for r in parts) == number(rows["total"][-2])
    assert sum(number(r[-1]) for r in parts) == number(rows["total"][-1])
    mca_rows = [name for name, r in rows.items() if name.isdigit() and r[8] == "yes"]
    assert mca_rows == [str(i) for i in range(9, 18)]  # the default preset: selective_mca


@pytest.mark.parametrize("backbone", ["vgg16", "resnet56", "resnet50"])
def test_describe_report_adds_up_for_every_backbone(backbone: str) -> None:
    report = describe(get_preset("selective_mca", backbone))
    expected = BACKBONES[backbone]
    assert (report["input_size"], report["num_classes"]) == (expected.input_size, expected.num_classes)
    assert len(report["blocks"]) == mca_length(backbone) and report["backbone"] == backbone
    for field in ("params", "macs"):
        rows = [report["stem"], *report["blocks"], report["head"]]
        assert sum(r[field] for r in rows) == report["total"][field]
        assert [i for i, r in enumerate(rows[1:], 1) if r[field] <= 0] == [], "every block and the head hold weights"
        assert (rows[0][field] > 0) == (rows[0]["kernel"] is not None), "a stem costs something iff it has a conv"


def test_describe_unknown_backbone_is_one_line_exit_2(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--backbone", "vgg19"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("space.describe: error: ")
    assert all(name in err for name in BACKBONE_NAMES)


def test_describe_backbone_conflicting_with_arch_is_a_user_error(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--arch", "resnet56:ghost", "--backbone", "vgg16"])
    assert info.value.code == 2 and "resnet56" in capsys.readouterr().err
