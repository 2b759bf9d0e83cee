"""Tests of evo.network.train: the recipes, divergence handling, interruption, bit-identical resumption, state files,
the step that ran."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from evo.network.data import load_dataset
from evo.network.train import StateError, TrainConfig, evaluate, evaluate_split, load_state, save_state, train


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def data():
    return load_dataset("synthetic", n_train=1000, n_val=300, n_test=200)


def small_convnet(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Conv2d(8, 16, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10))


def cfg(**kw):
    base = dict(steps=30, batch_size=50, device="cpu", seed=7, check_every=10, poll_every=5,
                checkpoint_every_s=None)
    base.update(kw)
    return TrainConfig(**base)


def test_defaults_are_the_papers_recipe():
    c = TrainConfig()
    assert (c.batch_size, c.momentum, c.weight_decay, c.augment, c.augment_pad) == (50, 0.9, 1e-4, True, 4)
    assert c.steps == 25600


def test_train_reports_fitness_steps_and_speed(data):
    model = small_convnet()
    r = train(model, data, 0.1, cfg(steps=40))
    assert r.outcome == "ok" and r.reason == "" and r.steps_done == 40
    assert 0.0 <= r.fitness <= 1.0 and math.isfinite(r.train_loss)
    assert r.images_per_s > 0 and r.wall_s > 0 and r.state is None
    assert r.fitness == evaluate_split(model, data, "val")
    assert model.training  # left in train mode


def test_training_does_not_touch_the_callers_rng(data):
    before = torch.get_rng_state()
    train(small_convnet(), data, 0.1, cfg(steps=10))
    assert torch.equal(before, torch.get_rng_state())


def test_same_seed_same_weights_other_seed_other_weights(data):
    a, b, c = small_convnet(), small_convnet(), small_convnet()
    train(a, data, 0.1, cfg(steps=20))
    train(b, data, 0.1, cfg(steps=20))
    train(c, data, 0.1, cfg(steps=20, seed=8))
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert not all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), c.state_dict().values()))


@pytest.mark.parametrize("lr", [1e30, float("inf"), float("nan")])
def test_divergence_gives_fitness_zero_not_an_exception(data, lr):
    r = train(small_convnet(), data, lr, cfg(steps=40))
    assert r.outcome == "nan_loss" and r.fitness == 0.0
    assert r.reason and r.steps_done <= 40


def test_nan_is_caught_between_checks(data):
    # the loss turns NaN at once but is only read every check_every steps: the training stops at that check
    r = train(small_convnet(), data, 1e30, cfg(steps=200, check_every=25))
    assert r.outcome == "nan_loss" and r.steps_done in (25, 50) and "step" in r.reason


def test_interrupt_save_load_resume_is_bit_identical(data, tmp_path):
    steps = 30
    ref = small_convnet()
    r_ref = train(ref, data, 0.05, cfg(steps=steps))

    polls = []

    def stop_after_10():
        polls.append(1)
        return len(polls) >= 2  # polled at steps 5 and 10

    part = small_convnet()
    r1 = train(part, data, 0.05, cfg(steps=steps), should_stop=stop_after_10)
    assert r1.outcome == "interrupted" and r1.steps_done == 10 and r1.fitness is None
    path = tmp_path / "state.pt"
    save_state(r1.state, path)
    state = load_state(path)
    assert state["step"] == 10

    fresh = small_convnet(seed=123)  # other initial weights: everything must come from the state
    r2 = train(fresh, data, 0.05, cfg(steps=steps), state=state)
    assert r2.outcome == "ok" and r2.steps_done == steps
    ref_sd, res_sd = ref.state_dict(), fresh.state_dict()
    assert ref_sd.keys() == res_sd.keys()
    for k in ref_sd:
        assert torch.equal(ref_sd[k], res_sd[k]), k
    assert r2.fitness == r_ref.fitness


def test_a_state_from_another_kind_of_device_still_resumes(data):
    r = train(small_convnet(), data, 0.05, cfg(steps=30), should_stop=lambda: True)
    state = dict(r.state)
    state["generator"] = torch.zeros(16, dtype=torch.uint8)  # a CUDA generator's state: not a CPU one
    state.pop("torch_rng")
    r2 = train(small_convnet(), data, 0.05, cfg(steps=30), state=state)
    assert r2.outcome == "ok" and r2.steps_done == 30


def test_numpy_learning_rates_are_accepted(data):
    import numpy as np

    r = train(small_convnet(), data, np.float32(0.05), cfg(steps=10))
    assert r.outcome == "ok"


def test_checkpoints_are_resumable_states(data, tmp_path):
    seen = []
    model = small_convnet()
    train(model, data, 0.05, cfg(steps=30, checkpoint_every_steps=10), on_checkpoint=seen.append)
    assert [s["step"] for s in seen] == [10, 20]
    path = tmp_path / "ckpt.pt"
    save_state(seen[0], path)
    # a state holds tensors, ints and floats only: it loads with weights_only=True
    state = torch.load(path, weights_only=True)
    assert isinstance(state["generator"], torch.Tensor) and isinstance(state["perm"], torch.Tensor)
    resumed = small_convnet(seed=5)
    train(resumed, data, 0.05, cfg(steps=30), state=load_state(path))
    for a, b in zip(model.state_dict().values(), resumed.state_dict().values()):
        assert torch.equal(a, b)


def test_torn_or_foreign_state_files_give_a_clear_error(data, tmp_path):
    r = train(small_convnet(), data, 0.05, cfg(steps=20), should_stop=lambda: True)
    path = tmp_path / "state.pt"
    save_state(r.state, path)
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    blob = path.read_bytes()
    torn = tmp_path / "torn.pt"
    torn.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(StateError, match=str(torn)):
        load_state(torn)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"\x00" * 100)
    with pytest.raises(StateError, match="junk.pt"):
        load_state(junk)
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(2)}, other)
    with pytest.raises(StateError, match="not an evo training state"):
        load_state(other)
    with pytest.raises(StateError, match="does not exist"):
        load_state(tmp_path / "missing.pt")


def test_evaluate():
    class Always(nn.Module):
        def __init__(self, k):
            super().__init__()
            self.k = k
            self.p = nn.Parameter(torch.zeros(1))

        def forward(self, x):
            out = torch.zeros(len(x), 10)
            out[:, self.k] = 1.0
            return out + self.p

    y = torch.tensor([0, 1, 1, 2, 1, 3, 1, 0])
    x = torch.zeros(8, 3, 4, 4)
    assert evaluate(Always(1), x, y, batch_size=3) == 0.5
    assert evaluate(Always(9), x, y) == 0.0
    with pytest.raises(ValueError, match="mean= and std="):
        evaluate(Always(1), x.to(torch.uint8), y)
    assert evaluate(Always(0), x.to(torch.uint8), y, mean=(0.5,) * 3, std=(0.2,) * 3) == 0.25


def test_a_model_without_batchnorm_or_convs_trains(data):
    seed_model = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, 10))
    r = train(seed_model, data, 0.1, cfg(steps=20, augment=False))
    assert r.outcome == "ok" and r.fitness < 0.3


# ----------------------------------------------------------------------------------------------------------
# The fast recipe


def fast_cfg(**kw):
    return cfg(recipe="fast", **kw)


def _same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    return all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize("stop_at", [10, 25])  # inside the first epoch (20 steps of 50 of 1000), and after it
def test_fast_recipe_resumes_bit_identically(data, tmp_path, stop_at):
    steps = 45
    ref = small_convnet()
    r_ref = train(ref, data, 0.05, fast_cfg(steps=steps))
    assert r_ref.outcome == "ok" and r_ref.recipe == "fast"

    polls = []
    part = small_convnet()
    r1 = train(part, data, 0.05, fast_cfg(steps=steps),
               should_stop=lambda: polls.append(1) or len(polls) * 5 >= stop_at)
    assert r1.outcome == "interrupted" and r1.steps_done == stop_at
    path = tmp_path / "state.pt"
    save_state(r1.state, path)
    state = load_state(path)
    assert state["recipe"] == "fast" and state["epoch"] == stop_at // 20
    assert {"ema", "first_flip"} <= set(state)

    fresh = small_convnet(seed=99)
    r2 = train(fresh, data, 0.05, fast_cfg(steps=steps), state=state)
    assert r2.outcome == "ok" and r2.steps_done == steps
    assert _same_weights(ref, fresh)
    assert r2.fitness == r_ref.fitness


def test_fast_recipe_follows_its_schedule(data):
    seen = []
    c = fast_cfg(steps=30, batch_size=100, warmup=0.2, final_lr=0.1, checkpoint_every_steps=1)
    train(small_convnet(), data, 0.05, c, on_checkpoint=seen.append)
    lrs = {s["step"] - 1: s["optimizer"]["param_groups"][0]["lr"] for s in seen}  # the rate of the last step
    peak = 0.05 * 100 / 50
    assert lrs[0] == pytest.approx(peak / 6)      # warm-up over round(0.2 * 30) = 6 steps
    assert lrs[2] == pytest.approx(peak * 3 / 6)
    assert lrs[5] == pytest.approx(peak)          # the peak at the last warm-up step
    assert lrs[6] == pytest.approx(peak)          # then linear decay ...
    assert lrs[17] == pytest.approx(peak * (1 + (0.1 - 1) * 11 / 23))
    assert lrs[28] == pytest.approx(peak * (1 + (0.1 - 1) * 22 / 23))
    assert all(lrs[s] == pytest.approx(c.lr_at(0.05, s)) for s in lrs)
    group = seen[0]["optimizer"]["param_groups"][0]
    assert group["nesterov"] is True and group["momentum"] == 0.9


def test_paper_recipe_keeps_a_constant_rate_and_plain_momentum(data):
    seen = []
    train(small_convnet(), data, 0.05, cfg(steps=12, checkpoint_every_steps=5), on_checkpoint=seen.append)
    assert [s["optimizer"]["param_groups"][0]["lr"] for s in seen] == [0.05, 0.05]
    assert seen[0]["optimizer"]["param_groups"][0]["nesterov"] is False
    assert "ema" not in seen[0] and "first_flip" not in seen[0] and seen[0]["recipe"] == "paper"


def test_fast_recipe_evaluates_and_keeps_the_weight_average_with_flip_averaging(data):
    model = small_convnet()
    r = train(model, data, 0.05, fast_cfg(steps=30))
    assert r.outcome == "ok"
    assert r.fitness == evaluate_split(model, data, "val", tta=True)  # the model holds the average
    live = small_convnet()
    r_live = train(live, data, 0.05, fast_cfg(steps=30, ema=0.0, tta=False))
    assert r_live.fitness == evaluate_split(live, data, "val")
    assert not _same_weights(model, live)  # the average is not the last step's weights


def test_alternating_flips_turn_each_image_every_epoch(data):
    # 1000 images, batch 500: two steps an epoch; with no crop, image i is flipped in epoch e iff
    # first_flip[i] xor (e odd). The trainer's batches are reproduced from its state.
    from evo.network.data import to_device

    r = train(small_convnet(), data, 0.05, fast_cfg(steps=8, batch_size=500, augment_pad=0, poll_every=2),
              should_stop=lambda: True)
    st = r.state
    assert st["epoch"] == 0 and st["first_flip"].dtype == torch.bool
    assert 300 < int(st["first_flip"].sum()) < 700  # a random first side
    dd = to_device(data, "cpu")
    idx = torch.arange(6)
    even = dd.batch(idx, None, pad=0, flips=st["first_flip"][idx])
    odd = dd.batch(idx, None, pad=0, flips=~st["first_flip"][idx])
    for i in range(6):
        x = data.train_x[i]
        assert torch.equal(even[i], x.flip(2) if st["first_flip"][i] else x)
        assert torch.equal(odd[i], x if st["first_flip"][i] else x.flip(2))


@pytest.mark.parametrize("recipe, crop_first_epoch, cropped", [
    ("fast", False, [False, False, True, True, True, True]),  # uncropped until each image has been seen
    ("fast", True, [True] * 6),
    ("paper", False, [True] * 6)])  # the paper's recipe ignores the setting
def test_the_fast_recipe_crops_from_the_second_epoch(data, monkeypatch, recipe, crop_first_epoch, cropped):
    # 1000 images, batch 500: two steps an epoch, three epochs; a batch is cropped when drawn with a generator
    from evo.network.data.device import DeviceData

    seen, batch = [], DeviceData.batch

    def spy(self, idx, generator=None, **kw):
        seen.append(generator is not None)
        return batch(self, idx, generator, **kw)

    monkeypatch.setattr(DeviceData, "batch", spy)
    r = train(small_convnet(), data, 0.05, cfg(recipe=recipe, steps=6, batch_size=500,
                                              crop_first_epoch=crop_first_epoch))
    assert r.outcome == "ok" and seen == cropped


def test_a_state_of_the_other_recipe_is_refused(data):
    r = train(small_convnet(), data, 0.05, cfg(steps=20), should_stop=lambda: True)
    with pytest.raises(StateError, match="recipe 'paper', not 'fast'"):
        train(small_convnet(), data, 0.05, fast_cfg(steps=20), state=r.state)


def test_fast_recipe_without_augmentation_or_momentum_trains(data):
    r = train(small_convnet(), data, 0.05, fast_cfg(steps=20, augment=False, momentum=0.0, ema=0.0))
    assert r.outcome == "ok" and 0.0 <= r.fitness <= 1.0


def test_evaluate_with_flip_averaging_sums_the_mirror_images_logits():
    class LeftBright(nn.Module):
        """Class 1 when the left half is brighter, class 0 otherwise: a mirror image turns the answer."""

        def __init__(self):
            super().__init__()
            self.p = nn.Parameter(torch.zeros(1))

        def forward(self, x):
            d = x[..., :2].mean((1, 2, 3)) - x[..., 2:].mean((1, 2, 3))
            return torch.stack([-d, d], 1) + self.p

    x = torch.zeros(4, 3, 4, 4)
    x[:2, ..., :2] = 1.0  # left-bright
    x[2:, ..., 3] = 2.0   # very right-bright
    y = torch.tensor([1, 1, 0, 0])
    assert evaluate(LeftBright(), x, y) == 1.0
    # with the mirror image, each logit pair cancels to a tie: argmax picks class 0
    assert evaluate(LeftBright(), x, y, tta=True) == 0.5


# ----------------------------------------------------------------------------------------------------------
# The step: eager or a CUDA graph


def test_the_cpu_trains_eagerly_and_says_why(data):
    r = train(small_convnet(), data, 0.05, cfg(steps=10))
    assert r.step_kind == "eager" and "CUDA device" in r.step_reason and "CPU" in r.step_reason
    assert r.recipe == "paper"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU: graph and eager steps compared there")
@pytest.mark.parametrize("recipe", ["paper", "fast"])
def test_graph_and_eager_steps_match_on_a_tiny_model(data, recipe):
    base = dict(steps=40, batch_size=50, device="cuda", seed=7, check_every=10, amp=False,
                checkpoint_every_s=None, recipe=recipe)
    torch.backends.cudnn.deterministic = True
    try:
        a, b = small_convnet(), small_convnet()
        ra = train(a, data, 0.05, TrainConfig(cuda_graph="off", **base))
        rb = train(b, data, 0.05, TrainConfig(cuda_graph="auto", **base))
    finally:
        torch.backends.cudnn.deterministic = False
    assert ra.step_kind == "eager" and rb.step_kind == "cuda_graph", rb.step_reason
    for (k, x), y in zip(a.state_dict().items(), b.state_dict().values()):
        torch.testing.assert_close(x, y, rtol=1e-4, atol=1e-5, msg=k)
    assert abs(ra.fitness - rb.fitness) <= 0.01


def test_a_state_saved_by_a_fused_gpu_optimizer_resumes_on_the_cpu(data):
    r = train(small_convnet(), data, 0.05, cfg(steps=20), should_stop=lambda: True)
    state = dict(r.state)
    opt = dict(state["optimizer"])
    opt["param_groups"] = [{**g, "fused": True, "lr": torch.tensor(0.05)} for g in opt["param_groups"]]
    state["optimizer"] = opt
    ref = small_convnet()
    train(ref, data, 0.05, cfg(steps=20))
    resumed = small_convnet()
    r2 = train(resumed, data, 0.05, cfg(steps=20), state=state)
    assert r2.outcome == "ok" and _same_weights(ref, resumed)
