"""Data-parallel training (capsedu.distributed) on the CPU: 2 gloo processes on 127.0.0.1."""
import os
import socket

import pytest
import torch
import torch.multiprocessing as mp

from capsedu.checkpoint import load_checkpoint
from capsedu.distributed import DistContext, env_world_size
from capsedu.train import TrainConfig, fit


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _config(output, **kw):
    base = dict(preset="small", epochs=1, batch_size=24, subset=True, train_limit=60, test_limit=30,
                eval_batch_size=30, output=str(output), seed=5, lr=1e-3,
                amp=False)  # float32: bf16 rounding would swamp the 1e-5 agreement this file checks
    base.update(kw)
    return TrainConfig(**base)


def _worker(rank, world, port, output):
    # what torchrun sets up; the group is created by the first fit() and left for the second
    os.environ.update({"RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": str(world),
                       "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "CAPSEDU_TEST_MODE": "1"})
    torch.set_num_threads(1)
    torch.distributed.init_process_group("gloo", rank=rank, world_size=world)
    try:
        fit(_config(output), progress=False, log=lambda *_: None)
        torch.save(load_checkpoint(os.path.join(output, "last.pt")), os.path.join(output, f"epoch1_rank{rank}.pt"))
        torch.distributed.barrier()
        # resume: every rank reads rank 0's checkpoint and trains a second epoch
        fit(_config(output, epochs=2), resume=os.path.join(output, "last.pt"), progress=False, log=lambda *_: None)
    finally:
        torch.distributed.destroy_process_group()


def _run_ddp(output, world=2):
    mp.start_processes(_worker, args=(world, _free_port(), str(output)), nprocs=world, join=True,
                       start_method="spawn")


def _weights(path):
    return load_checkpoint(path)["model_state"]


def test_two_processes_reach_the_same_weights_as_one_with_the_same_global_batch(tmp_path, one_thread):
    # one thread here as in each worker, so the sums of the single-process run come out in the same order
    # 60 digits in global batches of 24: 24, 24, 12 (the last one split 6 + 6 over the ranks)
    single = fit(_config(tmp_path / "one"), progress=False, log=lambda *_: None)
    _run_ddp(tmp_path / "two")
    epoch1 = load_checkpoint(tmp_path / "two" / "epoch1_rank0.pt")
    a, b = _weights(single.checkpoint), epoch1["model_state"]
    assert a.keys() == b.keys()
    for k in a:  # Adam's first steps amplify rounding a little: 1e-5 is 1/100 of one step (lr 1e-3)
        torch.testing.assert_close(b[k], a[k], rtol=1e-4, atol=1e-5, msg=k)
    # metrics are summed over the ranks, so they describe the whole epoch
    one, two = single.history[-1], epoch1["history"][-1]
    assert two["train_accuracy"] == pytest.approx(one["train_accuracy"])
    assert two["test_accuracy"] == pytest.approx(one["test_accuracy"])
    assert two["train_loss"] == pytest.approx(one["train_loss"], rel=1e-4)
    # only rank 0 wrote: the rank-1 copy is of the same file
    assert load_checkpoint(tmp_path / "two" / "epoch1_rank1.pt")["epoch"] == 1
    # the resumed data-parallel run continued from rank 0's checkpoint to epoch 2
    final = load_checkpoint(tmp_path / "two" / "last.pt")
    assert final["epoch"] == 2 and len(final["history"]) == 2
    assert final["history"][0] == two


def test_each_rank_takes_its_slice_and_the_loss_scales_average_to_the_global_mean():
    images, labels = torch.arange(10.0).view(5, 2), torch.arange(5)
    parts = [DistContext(rank=r, world_size=2).shard(images, labels) for r in range(2)]
    assert parts[0][1].tolist() == [0, 1, 2] and parts[1][1].tolist() == [3, 4]
    # DDP averages over 2 ranks: (3/5 * 2 + 2/5 * 2) / 2 = 1 -> weights n_r / N
    assert [p[2] for p in parts] == pytest.approx([2 * 3 / 5, 2 * 2 / 5])
    # a rank whose slice would be empty adds nothing but still takes part
    x, y, scale = DistContext(rank=2, world_size=3).shard(images[:2], labels[:2])
    assert scale == 0.0 and y.numel() == 1


def test_a_batch_of_pairs_is_sliced_field_by_field_like_its_labels():
    from capsedu.data import Pairs

    pairs = Pairs(*(torch.arange(5.0).view(5, 1, 1, 1) + 10 * k for k in range(3)))
    labels = torch.arange(10).view(5, 2)
    (x0, y0, s0), (x1, y1, s1) = [DistContext(rank=r, world_size=2).shard(pairs, labels) for r in range(2)]
    assert isinstance(x1, Pairs) and x1.first.flatten().tolist() == [13.0, 14.0] and y1[:, 0].tolist() == [6, 8]
    assert x0.second.flatten().tolist() == [20.0, 21.0, 22.0] and (s0, s1) == pytest.approx((6 / 5, 4 / 5))
    x, y, scale = DistContext(rank=2, world_size=3).shard(pairs.select(slice(0, 2)), labels[:2])
    assert scale == 0.0 and x.overlay.flatten().tolist() == [0.0] and y.shape == (1, 2)


def test_without_torchrun_everything_is_a_single_process(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert env_world_size() == 1
    ctx = DistContext()
    assert not ctx.enabled and ctx.is_main
    images, labels = torch.zeros(3, 1), torch.zeros(3, dtype=torch.long)
    x, y, scale = ctx.shard(images, labels)
    assert x is images and scale == 1.0
