"""Small shared fixtures for the training and resume tests."""
import os
import signal

import torch
from torch.optim.optimizer import register_optimizer_step_pre_hook

from capsedu.train import TrainConfig


def quiet(*_args, **_kw):
    pass


def tiny_config(tmp_path, **kw):
    """Two epochs of three 64-digit batches of the shipped subset: a run in a few seconds."""
    base = dict(preset="small", epochs=2, batch_size=64, subset=True, train_limit=192, test_limit=100,
                eval_batch_size=50, output=str(tmp_path / "run"), seed=3)
    base.update(kw)
    return TrainConfig(**base)


def weights(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def assert_same_weights(a, b, exact=False):
    assert a.keys() == b.keys()
    for k in a:
        if exact:
            assert torch.equal(a[k], b[k]), f"{k} differs (max {float((a[k] - b[k]).abs().max()):.3g})"
        else:
            torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6, msg=k)


def send_sigint_at_optimizer_step(n):
    """Deliver SIGINT from inside the n-th ``optimizer.step()`` call, before it has updated the weights."""
    calls = {"n": 0}

    def hook(optimizer, args, kwargs):
        calls["n"] += 1
        if calls["n"] == n:
            os.kill(os.getpid(), signal.SIGINT)

    return register_optimizer_step_pre_hook(hook)


def one_line_error(capsys, *argv) -> str:
    """Run ``capsedu argv`` in this process and return its error: one line on stderr, exit status 2."""
    from capsedu.cli import main

    code = main(list(argv))
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    return err
