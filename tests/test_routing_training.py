"""Training with every routing procedure (``TrainConfig.routing``, ``capsedu train --routing``) and Efficient-CapsNet
(``--model efficient-capsnet``): they train, checkpoint and resume; runs of the paper's routing are stored as before
the setting existed; combinations that mean nothing are one-line errors."""
from dataclasses import fields

import pytest
import torch

from capsedu.checkpoint import load_checkpoint, save_checkpoint
from capsedu.cli import main
from capsedu.efficient_capsnet import EfficientCapsNet
from capsedu.models import CapsNet
from capsedu.routings import ROUTINGS
from capsedu.train import TrainConfig, fit, make_optimizer, read_resumable, resume_differences, train_epoch
from run_fixtures import assert_same_weights, one_line_error, quiet, tiny_config, weights

SUBSET = ("--subset", "--train-limit", "256", "--test-limit", "200", "--batch-size", "64", "--no-progress")


def _fixed_batch(n=32):
    """The first ``n`` digits of the shipped subset."""
    from capsedu.data import Batches, load_split

    return next(iter(Batches(load_split("mnist", "train", subset=True), n, limit=n)))


@pytest.mark.parametrize("routing", sorted(ROUTINGS))
def test_every_routing_trains_through_the_trainer_and_its_loss_falls(routing, one_thread):
    config = TrainConfig(preset="small", routing=routing, seed=0).validate()
    torch.manual_seed(0)
    model = config.build_model()
    assert type(model.digits.routing) is ROUTINGS[routing]
    optimizer, scheduler = make_optimizer(model, lr=3e-3)
    losses = []
    train_epoch(model, [_fixed_batch()] * 6, optimizer, scheduler, config.build_objective(), progress=False,
                on_step=lambda record: losses.append(float(record.loss)))
    assert all(torch.isfinite(torch.tensor(losses))), losses
    # from its highest point: EM routing's first step drives every class activation towards 1 (its loss on this
    # batch goes from 1.64 to 3.48), and only then falls; every other procedure's peak is its first step
    assert losses[-1] < 0.9 * max(losses), losses


@pytest.mark.parametrize("routing", ["em", "inverted-attention"])
def test_a_run_with_another_routing_records_it_and_resumes_exactly(tmp_path, routing, one_thread):
    straight = fit(tiny_config(tmp_path / "a", routing=routing), progress=False, log=quiet)
    fit(tiny_config(tmp_path / "b", routing=routing, epochs=1), progress=False, log=quiet)
    state = load_checkpoint(tmp_path / "b" / "run" / "last.pt")
    assert state["train_config"]["routing"] == routing and state["model_config"]["routing"] == routing
    resumed = fit(tiny_config(tmp_path / "b", routing=routing, epochs=2), resume=tmp_path / "b" / "run" / "last.pt",
                  progress=False, log=quiet)
    assert type(resumed.model.digits.routing) is ROUTINGS[routing]
    assert_same_weights(weights(straight.model), weights(resumed.model), exact=True)
    with pytest.raises(ValueError, match=r"--routing 'auto' \(= 'dynamic'\) \(checkpoint: '" + routing):
        fit(tiny_config(tmp_path / "b", epochs=3), resume=tmp_path / "b" / "run" / "last.pt", progress=False,
            log=quiet)


def test_a_dynamic_run_is_stored_without_the_routing_setting_and_an_old_checkpoint_resumes_unchanged(tmp_path,
                                                                                                      one_thread):
    straight = fit(tiny_config(tmp_path / "a"), progress=False, log=quiet)
    fit(tiny_config(tmp_path / "b", epochs=1), progress=False, log=quiet)
    path = tmp_path / "b" / "run" / "last.pt"
    state = load_checkpoint(path)
    # exactly the settings a checkpoint held before TrainConfig.routing existed
    assert set(state["train_config"]) == {f.name for f in fields(TrainConfig)} - {"routing"}
    assert "routing" not in state["model_config"]
    state["train_config"].pop("routing", None)
    save_checkpoint(state, path)
    _, saved = read_resumable(path)
    assert saved.routing == "dynamic"
    assert resume_differences(saved, tiny_config(tmp_path / "b", epochs=2)) == ([], ["--epochs 2 (checkpoint: 1)"])
    resumed = fit(tiny_config(tmp_path / "b", epochs=2), resume=path, progress=False, log=quiet)
    assert_same_weights(weights(straight.model), weights(resumed.model), exact=True)
    assert [h["test_accuracy"] for h in resumed.history] == [h["test_accuracy"] for h in straight.history]


def test_the_cli_trains_efficient_capsnet_with_its_own_routing_resumes_and_evaluates_it(tmp_path, capsys, one_thread):
    out = str(tmp_path / "e")
    assert main(["train", "--model", "efficient-capsnet", *SUBSET, "--epochs", "1", "--output", out]) == 0
    text = capsys.readouterr().out
    assert "efficient-capsnet 'mnist', self-attention routing, 1,573,168 parameters" in text
    state = load_checkpoint(tmp_path / "e" / "last.pt")
    assert state["model_class"] == "efficient-capsnet" and state["train_config"]["routing"] == "self-attention"
    assert state["objective"]["name"] == "margin" and state["objective"]["reconstruction_weight"] == 0.0005
    assert main(["train", "--resume", "--output", out, "--epochs", "2", "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "resume: using --epochs 2 (checkpoint: 1)" in text and "--routing" not in text
    last = text.strip().splitlines()[-1]
    state = load_checkpoint(tmp_path / "e" / "last.pt")
    assert state["epoch"] == 2 and len(state["history"]) == 2
    assert main(["evaluate", out + "/last.pt", "--subset", "--test-limit", "200"]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == last


def test_efficient_capsnet_takes_the_40x40_canvas_and_any_routing(one_thread):
    config = TrainConfig(model="efficient-capsnet", routing="em", augment="place", canvas_size=40).validate()
    model = config.build_model((1, 40, 40))
    assert isinstance(model, EfficientCapsNet) and isinstance(model, CapsNet) and model.preset == "mnist"
    assert model.config.image_size == 40 and model.config.feature_grid == 15 and model.config.routing == "em"
    u_hat, c = model.couplings(torch.rand(2, 1, 40, 40))
    assert u_hat.shape == (2, 16, 10, 16) and c.shape == (2, 16, 10)
    torch.testing.assert_close(c.sum(-1), torch.ones(2, 16))


@pytest.mark.parametrize("argv, message", [
    (("--model", "baseline", "--routing", "em"), "--routing em routes capsules, and the baseline has none"),
    (("--routing", "em", "--routing-gradient", "last"),
     "--routing-gradient last applies to dynamic routing only, not to --routing em"),
    (("--model", "efficient-capsnet", "--routing-gradient", "last"),
     "--routing-gradient last applies to the capsnet's dynamic routing only"),
    (("--preset", "cifar10", "--dataset", "cifar10", "--routing", "uniform"),
     "the cifar10 preset routes with a none-of-the-above category"),
    (("--model", "efficient-capsnet", "--preset", "small"), "--preset must be one of ['mnist'] for the efficient"),
    (("--model", "efficient-capsnet", "--dataset", "multimnist", "--loss", "pair-bce"),
     "--loss pair-bce is for the baseline; the efficient-capsnet trains on pairs with --loss pair-margin"),
    (("--model", "baseline", "--preset", "mnist"), "--preset must be one of"),
])
def test_routing_settings_that_mean_nothing_are_one_line_errors(tmp_path, capsys, argv, message):
    err = one_line_error(capsys, "train", *SUBSET, "--output", str(tmp_path / "o"), *argv)
    assert message in err
    assert not (tmp_path / "o").exists()


def test_an_unknown_routing_is_refused_by_the_parser_and_by_the_config(capsys):
    with pytest.raises(SystemExit) as info:
        main(["train", "--routing", "telepathy"])
    assert info.value.code == 2 and "invalid choice: 'telepathy'" in capsys.readouterr().err
    with pytest.raises(ValueError, match=r"^--routing must be one of \['dynamic', 'em', "):
        TrainConfig(routing="telepathy").validate()


def test_auto_routing_is_each_models_own_in_python_as_on_the_command_line():
    from capsedu.training.config import MODEL_ROUTING

    assert type(CapsNet("small").digits.routing) is ROUTINGS[MODEL_ROUTING["capsnet"]]          # the models' own
    assert type(EfficientCapsNet().digits.routing) is ROUTINGS[MODEL_ROUTING["efficient-capsnet"]]
    for model, routing in MODEL_ROUTING.items():
        config = TrainConfig(model=model).validate()
        assert config.routing == "auto" and config.resolved_routing() == routing
        assert type(config.build_model().digits.routing) is ROUTINGS[routing]
    stored = TrainConfig(model="efficient-capsnet").to_dict()
    assert stored["routing"] == "self-attention" and TrainConfig.from_dict(stored).routing == "self-attention"
    assert "routing" not in TrainConfig().to_dict()
    assert "routing" not in TrainConfig(model="baseline").validate().to_dict()


def test_a_stored_dynamic_run_still_equals_auto_and_a_stored_efficient_capsnet_without_routing_stays_dynamic():
    stored = TrainConfig(routing="dynamic").to_dict()
    assert stored == TrainConfig().to_dict()                  # a CapsNet stored as before "auto" existed
    assert resume_differences(TrainConfig.from_dict(stored), TrainConfig()) == ([], [])
    # an Efficient-CapsNet trained from Python before "auto" routed dynamically, and its settings say so by omission
    old = TrainConfig(model="efficient-capsnet", routing="dynamic").to_dict()
    assert "routing" not in old and TrainConfig.from_dict(old).resolved_routing() == "dynamic"
    refused, _ = resume_differences(TrainConfig.from_dict(old), TrainConfig(model="efficient-capsnet"))
    assert refused == ["--routing 'auto' (= 'self-attention') (checkpoint: 'dynamic')"]
    assert resume_differences(TrainConfig.from_dict(old), TrainConfig(model="efficient-capsnet", routing="dynamic")) \
        == ([], [])


def test_the_cli_takes_auto_routing_explicitly(tmp_path, capsys, one_thread):
    out = str(tmp_path / "c")
    assert main(["train", "--routing", "auto", *SUBSET, "--train-limit", "64", "--epochs", "1", "--output", out]) == 0
    state = load_checkpoint(tmp_path / "c" / "last.pt")
    assert "routing" not in state["train_config"] and state["model_config"].get("routing", "dynamic") == "dynamic"
