"""The weight-sharing supernet: every subnet is a real network, paths are balanced, training resumes exactly."""
from __future__ import annotations

import copy
import random
from dataclasses import replace

import pytest
import torch

from space import ArchConfig, SearchSpace, build_model, presets_for
from space.supernet import OutsideMenu, Supernet
from trainer.budget import get_budget
from trainer.supernet import PathSampler, build_supernet, score_subnets, train_supernet


def sampled(space: SearchSpace, n: int, seed: int) -> list[ArchConfig]:
    """`n` architectures of the menu, drawn with a seeded RNG (every bit, kernel set and ratio at random)."""
    rng = random.Random(seed)
    return [space.from_params({**{f"mca_{i}": rng.random() < 0.5 for i in range(space.n_blocks)},
                               "kernels": rng.choice(space.kernel_choices), "ratio": rng.choice(space.ratios)})
            for _ in range(n)]


@pytest.fixture(scope="module")
def ghost_supernet() -> Supernet:
    torch.manual_seed(0)
    net = Supernet(SearchSpace())
    # Random BN statistics and affine terms, so a wrongly copied buffer cannot hide behind the defaults.
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.normal_(1, 0.1)
                m.bias.normal_(0, 0.1)
    return net.eval()


def test_every_subnet_is_the_stand_alone_network_with_the_paths_logits(ghost_supernet):
    """The presets the menu holds (s=1, the CNN, is not in it) and 20 sampled architectures."""
    space = ghost_supernet.space
    archs = [a for a in presets_for("ghostnet").values() if a.ratio in space.ratios] + sampled(space, 20, 1)
    assert len(archs) == 23
    x = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        for arch in archs:
            ghost_supernet.active = arch
            sub = ghost_supernet.extract(arch).eval()
            assert type(sub) is type(build_model(arch))  # an ordinary space model: export, train, confirm take it
            assert (sub(x) - ghost_supernet(x)).abs().max().item() <= 1e-5, arch.key
            # Its parameters are the path's own, not a copy of someone else's.
            trunk = ghost_supernet.trunks[str(arch.ratio)]
            stems = zip(sub.stem.state_dict().values(), trunk.stem.state_dict().values())
            assert all(torch.equal(a, b) for a, b in stems)


@pytest.mark.parametrize("backbone", ["vgg16", "resnet56"])
def test_the_other_backbones_extract_the_same_way(backbone):
    space = SearchSpace(backbone=backbone)
    net = Supernet(space).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        for arch in sampled(space, 3, 2):
            net.active = arch
            assert (net.extract(arch).eval()(x) - net(x)).abs().max().item() <= 1e-5, arch.key


@pytest.mark.parametrize("change, says", [
    ({"ratio": 1}, "ratio 1 is not one of 2, 3, 4"),
    ({"width": 0.5}, "width 0.5, the supernet's is 1.0"),
    ({"kernels": (3, 5, 9)}, "kernel set 3-5-9 is not one of"),
    ({"backbone": "vgg16", "mca": (False,) * 13}, "backbone 'vgg16', the supernet's is 'ghostnet'"),
])
def test_an_architecture_outside_the_menu_is_refused_in_one_line(ghost_supernet, change, says):
    arch = replace(presets_for("ghostnet")["selective_mca"], **change)
    with pytest.raises(OutsideMenu) as info:
        ghost_supernet.extract(arch)
    assert says in str(info.value) and "\n" not in str(info.value)


def test_fair_paths_balance_every_choice_in_every_group():
    space = SearchSpace()
    sampler = PathSampler(space, seed=3)
    assert sampler.group == 6  # lcm(on/off, 3 kernel sets, 3 ratios)
    for group in range(5):
        paths = [sampler(group * 6 + i) for i in range(6)]
        on = torch.tensor([p.mca for p in paths], dtype=torch.float)
        assert on.mean(0).tolist() == [0.5] * 16, "each insertion point on in exactly half the steps"
        assert sorted(p.ratio for p in paths) == [2, 2, 3, 3, 4, 4]
        assert sorted(p.kernels for p in paths) == sorted(space.kernel_sets * 2)
    assert [sampler(i) for i in range(12)] == [PathSampler(space, seed=3)(i) for i in range(12)], "from the step alone"
    assert [sampler(i) for i in range(12)] != [PathSampler(space, seed=4)(i) for i in range(12)]


def test_sandwich_paths_hold_the_largest_and_the_smallest():
    sampler = PathSampler(SearchSpace(), seed=0, sampling="sandwich")
    for group in range(3):
        assert all(sampler(4 * group).mca) and not any(sampler(4 * group + 1).mca)
    with pytest.raises(ValueError, match="unknown path sampling 'greedy'"):
        PathSampler(SearchSpace(), seed=0, sampling="greedy")


def test_a_step_updates_only_the_path_it_ran():
    budget = get_budget("smoke", proxy_width=0.5)
    net = build_supernet(SearchSpace(), budget, seed=0)
    path = net.path_fn(0)
    before = {name: p.detach().clone() for name, p in net.named_parameters()}
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    net.train()
    net(torch.randn(4, 3, 32, 32)).logsumexp(1).mean().backward()
    optimizer.step()
    on_path = {id(p) for m in net.path_modules(path) for p in m.parameters()}
    for name, p in net.named_parameters():
        changed = not torch.equal(before[name], p.detach())
        if id(p) not in on_path:
            assert not changed, f"{name} is off the path {path.key} and was updated"
    assert any(not torch.equal(before[n], p.detach()) for n, p in net.named_parameters() if id(p) in on_path)
    assert int(net.steps) == 1


@pytest.fixture(scope="module")
def tiny(cifar_dir):
    from trainer.data import load_cifar10

    torch.set_num_threads(1)
    return load_cifar10(cifar_dir), get_budget("smoke", epochs=2, train_size=128, val_size=100, proxy_width=0.25,
                                               batch_size=32)


def test_a_resumed_supernet_training_ends_with_the_same_weights(tiny):
    data, budget = tiny
    space = SearchSpace()
    whole = train_supernet(space, data, budget, seed=1, bn_images=64)
    states = []
    train_supernet(space, data, budget, seed=1, bn_images=64,  # each state copied, as saved to disk
                   on_checkpoint=lambda s, state: states.append(copy.deepcopy(state)))
    resumed = train_supernet(space, data, budget, seed=1, bn_images=64, resume=states[0])
    assert whole.status == resumed.status == "ok" and resumed.epochs == 2 and int(resumed.supernet.steps) > 0
    for (name, a), b in zip(whole.supernet.state_dict().items(), resumed.supernet.state_dict().values()):
        assert torch.equal(a, b), name
    assert whole.val_accs == resumed.val_accs

    # Scores inherit the weights: the same architecture scores the same twice; accuracies are accuracies.
    archs = sampled(space, 3, 5)
    first = score_subnets(whole.supernet, archs, data, budget, seed=1, bn_images=64)
    assert first == score_subnets(whole.supernet, archs, data, budget, seed=1, bn_images=64)
    assert all(0.0 <= a <= 1.0 for a in first)


def test_supernets_of_two_seeds_can_share_one_split(tiny):
    """`split_seed` picks the split alone: two seeds on one split validate and recalibrate on the same images."""
    from trainer.proxy import training_loaders

    data, budget = tiny
    cpu = torch.device("cpu")
    _, val_a, bn_a = training_loaders(data, budget, 0, cpu, "val", bn_images=32, with_training=False, split_seed=7)
    _, val_b, bn_b = training_loaders(data, budget, 3, cpu, "val", bn_images=32, with_training=False, split_seed=7)
    _, val_own, _ = training_loaders(data, budget, 3, cpu, "val", bn_images=32, with_training=False)
    assert torch.equal(val_a.images, val_b.images) and torch.equal(bn_a.images, bn_b.images)
    assert not torch.equal(val_own.images, val_b.images), "without split_seed each seed has its own split"
