"""capsedu.teaching.short_runs: the short comparison runs of chapters 5 and 6, on the library's loop."""
import pytest
import torch

from capsedu import CapsNet
from capsedu.data import Batches
from capsedu.objectives import CrossEntropy, MarginLoss
from capsedu.teaching.short_runs import train_steps
from capsedu.train import evaluate


def tiny_capsnet():
    torch.manual_seed(0)
    return CapsNet("small", conv_channels=8, primary_types=2, decoder_hidden=(16, 16))


def test_train_steps_records_every_step_and_the_loss_terms():
    model = tiny_capsnet()
    gen = torch.Generator().manual_seed(0)
    batches = [(torch.rand(4, 1, 28, 28, generator=gen), torch.tensor([0, 1, 2, 3]))]
    hist = train_steps(model, batches, MarginLoss(reconstruction_weight=0.0005), steps=3)  # cycles over the batch
    assert len(hist["loss"]) == len(hist["accuracy"]) == len(hist["reconstruction"]) == 3
    assert hist["loss"][0] == pytest.approx(hist["margin"][0] + hist["reconstruction"][0], rel=1e-5)
    assert hist["loss"][-1] < hist["loss"][0]
    accuracy = evaluate(model, batches)["accuracy"]
    assert 0.0 <= accuracy <= 1.0


def test_train_steps_reshuffles_a_batcher_on_every_pass():
    model = tiny_capsnet()
    images = torch.rand(6, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    labels = torch.arange(6)
    seen = []
    batches = Batches((images, labels), 3, shuffle=True, generator=torch.Generator().manual_seed(0))

    class Recording(CrossEntropy):
        def loss(self, output, images, targets):
            seen.append(targets.tolist())
            return super().loss(output, images, targets)

    train_steps(model, batches, Recording(scale=10.0), steps=4)
    assert len(seen) == 4
    assert sorted(seen[0] + seen[1]) == sorted(seen[2] + seen[3]) == list(range(6))
    assert seen[:2] != seen[2:]  # a new permutation for the second pass


def test_train_steps_refuses_a_bad_step_count_or_no_batches():
    with pytest.raises(ValueError, match="steps"):
        train_steps(tiny_capsnet(), [], MarginLoss(), steps=0)
    with pytest.raises(ValueError, match="no batches"):
        train_steps(tiny_capsnet(), [], MarginLoss(), steps=2)
