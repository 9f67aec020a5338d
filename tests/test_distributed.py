"""Data-parallel training (tinynet.distributed): 2 ranks at batch 32 reach the weights of 1 rank
at batch 64, the sampler's shares cover the data set once per epoch, only rank 0 writes
checkpoints, and a failing rank ends the job. The multi-rank tests start
``python -m tinynet.distributed.run -n 2 tests/distributed_worker.py ...`` (mpiexec from the
mpich wheel) and skip when mpi4py or mpiexec is missing."""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import tinynet
from tinynet import nn
from tinynet.distributed import DistributedSampler
from tinynet.train import make_train_step

ROOT = Path(__file__).resolve().parents[1]
WORKER = ROOT / "tests" / "distributed_worker.py"
_spec = importlib.util.spec_from_file_location("distributed_worker", WORKER)
worker = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(worker)


def _mpi_missing():
    if importlib.util.find_spec("mpi4py") is None:
        return "mpi4py is not installed (pip install -e \".[distributed]\")"
    beside = Path(sys.executable).parent / "mpiexec"
    if not beside.exists() and shutil.which("mpiexec") is None:
        return "mpiexec is not installed (pip install mpich)"
    return None


requires_mpi = pytest.mark.skipif(_mpi_missing() is not None, reason=str(_mpi_missing()))


def launch(*args, n=2, timeout=240, expect_ok=True):
    """Run the worker on ``n`` ranks through the launcher; returns (exit code, output, seconds)."""
    cmd = [sys.executable, "-m", "tinynet.distributed.run", "-n", str(n), "--timeout", str(timeout),
           str(WORKER), *map(str, args)]
    env = dict(os.environ, PYTHONPATH=str(ROOT), TINYNET_DISTRIBUTED_TIMEOUT="60")
    began = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout + 30, cwd=ROOT)
    seconds = time.perf_counter() - began
    output = done.stdout + done.stderr
    if expect_ok:
        assert done.returncode == 0, output[-4000:]
    return done.returncode, output, seconds


# ------------------------------------------------------------------ without MPI
def test_sampler_shares_cover_the_data_set_once_per_epoch():
    n, world = 103, 4  # not a multiple: the last share is padded with the start of the order
    for epoch in (0, 1):
        shares = []
        for rank in range(world):
            sampler = DistributedSampler(range(n), num_replicas=world, rank=rank, seed=5)
            sampler.set_epoch(epoch)
            shares.append(list(sampler))
            assert len(sampler) == len(shares[-1]) == 26
        everything = np.concatenate(shares)
        assert sorted(set(everything.tolist())) == list(range(n))  # every sample at least once
        assert len(everything) == 104  # and exactly once but for the one padded sample
    dropped = [list(DistributedSampler(range(n), num_replicas=world, rank=r, drop_last=True)) for r in range(world)]
    flat = np.concatenate(dropped)
    assert len(flat) == 100 and len(set(flat.tolist())) == 100  # disjoint, tail dropped


def test_sampler_set_epoch_reshuffles_the_same_way_on_every_rank():
    def order(rank, epoch):
        s = DistributedSampler(range(40), num_replicas=2, rank=rank, seed=1)
        s.set_epoch(epoch)
        return list(s)
    assert order(0, 0) == order(0, 0)  # the same epoch, the same order
    assert order(0, 0) != order(0, 1)
    assert not set(order(0, 1)) & set(order(1, 1))
    unshuffled = DistributedSampler(range(6), num_replicas=2, rank=1, shuffle=False)
    assert list(unshuffled) == [1, 3, 5]


def test_sampler_and_ddp_errors_name_what_is_wrong():
    with pytest.raises(ValueError, match=r"DistributedSampler: invalid rank 2, rank should be in the interval \[0, 1\]"):
        DistributedSampler(range(4), num_replicas=2, rank=2)
    with pytest.raises(RuntimeError, match="DistributedSampler: the process group is not initialised"):
        DistributedSampler(range(4))
    with pytest.raises(RuntimeError, match="DistributedDataParallel: the default process group has not been "
                                           "initialized; call tinynet.distributed.init_process_group"):
        tinynet.distributed.DistributedDataParallel(nn.Linear(2, 2))
    with pytest.raises(ValueError, match="init_process_group: backend must be 'mpi' or 'nccl', got 'gloo'"):
        tinynet.distributed.init_process_group("gloo")
    assert tinynet.distributed.get_rank() == 0 and tinynet.distributed.get_world_size() == 1


def test_nccl_backend_fails_clearly_without_a_gpu():
    if tinynet.backend.cuda_available():
        pytest.skip("a GPU is visible: the NCCL path is exercised for real there")
    with tinynet.backend.simulate_cuda(False):
        with pytest.raises(RuntimeError, match=r"init_process_group\(backend='nccl'\): (no GPU is visible|a CUDA "
                                               "device was requested but CuPy is not installed)"):
            tinynet.distributed.init_process_group("nccl")
    assert not tinynet.distributed.is_initialized()


def test_post_accumulate_grad_hook_sees_the_accumulated_gradient():
    """The hook DistributedDataParallel builds on: called after each accumulation into .grad,
    once per path into the leaf."""
    w = tinynet.tensor([1.0, 2.0], requires_grad=True)
    seen = []
    handle = w.register_post_accumulate_grad_hook(lambda t: seen.append(t.grad.numpy().copy()))
    (w * w).sum().backward()  # two paths into w (both operands of the product)
    assert len(seen) == 2
    np.testing.assert_allclose(seen[-1], [2.0, 4.0])
    handle.remove()
    (w * 3).sum().backward()
    assert len(seen) == 2
    np.testing.assert_allclose(w.grad.numpy(), [5.0, 7.0])
    with pytest.raises(RuntimeError, match="register_post_accumulate_grad_hook: only leaf tensors"):
        (w * 2).register_post_accumulate_grad_hook(print)


# ------------------------------------------------------------------ references, in this process
def _train_reference(model_name, opt_name, halves=False):
    """One process: STEPS steps at batch 64 from rank 0's initial weights. With ``halves``, the
    by-hand computation of 2 ranks with per-rank BatchNorm statistics: each half of the batch
    goes forward from rank 0's running statistics (DDP broadcasts them at every forward),
    the two gradients are averaged, and rank 0's new running statistics are kept. Returns
    (rank 0's state, rank 1's running statistics or None)."""
    build, size = worker.MODELS["bn" if model_name == "syncbn" else model_name]
    x, y = worker.data(size)
    tinynet.manual_seed(100)  # rank 0's seed in the worker
    model = build()
    optimizer = worker.OPTIMIZERS[opt_name](model.parameters())
    loss_fn = nn.CrossEntropyLoss()
    rank1_buffers = None
    for k in range(worker.STEPS):
        xs, ys = x[k * 64:(k + 1) * 64], y[k * 64:(k + 1) * 64]
        if not halves:
            make_train_step(model, optimizer, loss_fn)(tinynet.tensor(xs), tinynet.tensor(ys))
            continue
        start = {n: b.detach().clone() for n, b in model.named_buffers()}
        grads, after = [], []
        for r in (0, 1):
            for n, b in model.named_buffers():
                b.copy_(start[n])
            optimizer.zero_grad()
            loss_fn(model(tinynet.tensor(xs[32 * r:32 * (r + 1)])), tinynet.tensor(ys[32 * r:32 * (r + 1)])).backward()
            grads.append([p.grad.numpy().copy() for p in model.parameters()])
            after.append({n: b.detach().clone() for n, b in model.named_buffers()})
        for p, g0, g1 in zip(model.parameters(), *grads):
            p.grad.data[...] = (g0 + g1) / 2
        optimizer.step()
        for n, b in model.named_buffers():
            b.copy_(after[0][n])
        rank1_buffers = {n: t.numpy() for n, t in after[1].items()}
    return worker.state_arrays(model), rank1_buffers


@pytest.fixture(scope="module")
def equivalence_results(tmp_path_factory):
    if _mpi_missing():
        pytest.skip(_mpi_missing())
    out = tmp_path_factory.mktemp("equivalence")
    launch("equivalence", out)
    return out


def _load(out, name, rank):
    with np.load(out / f"{name}_rank{rank}.npz") as f:
        state = dict(f)
    return state, json.loads((out / f"{name}_rank{rank}.json").read_text())


def _assert_states_close(actual, expected, what, atol=2e-5, rtol=1e-4):
    assert actual.keys() == expected.keys()
    for key in expected:
        np.testing.assert_allclose(actual[key], expected[key], atol=atol, rtol=rtol, err_msg=f"{what}: {key}")


@requires_mpi
@pytest.mark.parametrize("mode", ["eager", "compiled"])
@pytest.mark.parametrize("opt_name", ["sgd", "adam"])
@pytest.mark.parametrize("model_name", ["lenet", "syncbn"])
def test_two_ranks_at_batch_32_reach_one_rank_at_batch_64(equivalence_results, model_name, opt_name, mode):
    """LeNet, and the BatchNorm model with SyncBatchNorm: the same weights and running
    statistics on both ranks as one process at the global batch, after 5 steps."""
    expected, _ = _train_reference(model_name, opt_name)
    for rank in (0, 1):
        state, info = _load(equivalence_results, f"{model_name}_{opt_name}_{mode}", rank)
        _assert_states_close(state, expected, f"{model_name} {opt_name} {mode} rank {rank}")
        # every bucket all-reduced at every step (in the compiled runs, replays included)
        assert info["all_reduces"] >= info["buckets"] * worker.STEPS
        if mode == "compiled":
            assert info["fallback"] is None and info["program_length"] > 0  # the step was replayed
    if model_name == "lenet":
        assert info["buckets"] > 1  # the all-reduce really went in several buckets


@requires_mpi
@pytest.mark.parametrize("mode", ["eager", "compiled"])
@pytest.mark.parametrize("opt_name", ["sgd", "adam"])
def test_per_rank_batchnorm_statistics_match_the_computation_by_hand(equivalence_results, opt_name, mode):
    """Plain BatchNorm under DDP: each rank normalises with its own half's statistics and
    starts every forward from rank 0's running statistics, as PyTorch's DDP."""
    expected, rank1_buffers = _train_reference("bn", opt_name, halves=True)
    rank0, _ = _load(equivalence_results, f"bn_{opt_name}_{mode}", 0)
    _assert_states_close(rank0, expected, f"bn {opt_name} {mode} rank 0")
    rank1, _ = _load(equivalence_results, f"bn_{opt_name}_{mode}", 1)
    for key, value in rank1.items():  # the same weights; its own last running statistics
        np.testing.assert_allclose(value, rank1_buffers.get(key, expected[key]), atol=2e-5, rtol=1e-4, err_msg=key)
    assert not np.allclose(rank1["1.running_mean"], rank0["1.running_mean"])


@requires_mpi
def test_collectives_and_the_sampler_across_two_ranks(tmp_path):
    launch("collectives", tmp_path)
    ranks = [dict(np.load(tmp_path / f"collectives_rank{r}.npz")) for r in (0, 1)]
    for got in ranks:
        np.testing.assert_allclose(got["sum"], [3.0, 6.0, 9.0])
        np.testing.assert_allclose(got["avg"], [1.5, 3.0])
        np.testing.assert_allclose(got["max"], [1.0, 0.0])
        np.testing.assert_allclose(got["broadcast"], np.full((2, 2), 8.0))  # rank 1's
        np.testing.assert_array_equal(got["all_gather"], [[0, 1, 2], [10, 11, 12]])
        np.testing.assert_allclose(got["no_sync_grad"], got["no_sync_expected"], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(got["shared_grads"], got["shared_expected"], rtol=1e-5, atol=1e-6)
        # 2 * (k + 0) + 2 * (k + 1) at call k: eager, recorded twice, then replayed twice
        np.testing.assert_allclose(got["compiled_all_reduce"], np.repeat(4.0 * np.arange(5)[:, None] + 2, 3, axis=1))
        assert got["compiled_replays"]  # the program is [x * 2, all_reduce]
    for got in ranks:  # SyncBatchNorm on half the batch each = BatchNorm2d on the whole batch
        for key in ("y", "dx", "mean", "var"):
            np.testing.assert_allclose(got[f"bn_sync_{key}"], got[f"bn_full_{key}"], rtol=1e-10, atol=1e-12,
                                       err_msg=key)
    for key in ("dw", "db"):  # each rank's share of the parameter gradients; DDP sums them
        np.testing.assert_allclose(ranks[0][f"bn_sync_{key}"] + ranks[1][f"bn_sync_{key}"], ranks[0][f"bn_full_{key}"],
                                   rtol=1e-10, atol=1e-12, err_msg=key)
    for epoch in (0, 1):
        shares = [r[f"sampler_epoch{epoch}"] for r in ranks]
        assert sorted(np.concatenate(shares).tolist()) == list(range(10))  # exactly once per epoch
    assert not np.array_equal(ranks[0]["sampler_epoch0"], ranks[0]["sampler_epoch1"])


@requires_mpi
def test_fit_prints_and_writes_checkpoints_on_rank_0_only_and_resumes(tmp_path):
    _, output, _ = launch("fit", tmp_path)
    assert output.count("epoch 1/2: train loss") == 1 and output.count("epoch 2/2: train loss") == 1
    writes = (tmp_path / "writes_rank0.txt").read_text().split()
    assert sorted(writes) == ["epoch_1.npz", "epoch_2.npz", "last.npz", "last.npz"]  # each once per epoch
    assert not (tmp_path / "writes_rank1.txt").exists()
    first = [dict(np.load(tmp_path / f"fit_rank{r}.npz")) for r in (0, 1)]
    for key in ("0.weight", "1.weight", "1.bias", "4.weight", "4.bias"):  # identical weights (running
        np.testing.assert_array_equal(first[1][key], first[0][key])  # statistics are per rank)

    _, output, _ = launch("fit", tmp_path, "resume", 3)
    assert output.count("resumed from") == 1 and output.count("epoch 3/3: train loss") == 1
    assert "epoch 2/3" not in output
    resumed = [dict(np.load(tmp_path / f"fit_resumed_rank{r}.npz")) for r in (0, 1)]
    assert len(resumed[0]["train_loss"]) == 3
    np.testing.assert_array_equal(resumed[0]["train_loss"][:2], first[0]["train_loss"])
    assert (tmp_path / "checkpoints" / "epoch_3.npz").exists()


@requires_mpi
@pytest.mark.parametrize("how", ["raise", "kill"])
def test_a_failing_rank_ends_the_job_with_an_error_naming_it(tmp_path, how):
    code, output, seconds = launch("fail", tmp_path, how, timeout=60, expect_ok=False)
    assert code != 0
    assert not (tmp_path / "rank0_finished").exists()  # rank 0 did not get past its collective
    if how == "raise":
        assert "ValueError: rank 1 fails on purpose" in output
        assert "tinynet.distributed: rank 1 of 2 failed (ValueError" in output
    else:
        assert "rank 1 of 2" in output and "was killed by signal SIGKILL" in output
    assert seconds < 30  # ended by the abort, not by the 60 s timeouts


MNIST_DIR = ROOT.parent / "shared" / "data" / "mnist"  # as tests/test_examples.py


@requires_mpi
@pytest.mark.skipif(not (MNIST_DIR / "t10k-labels-idx1-ubyte.gz").exists(), reason="MNIST not found at ../shared/data/mnist")
def test_example_with_distributed_prints_and_writes_once(tmp_path):
    """examples/lenet.py --distributed on 2 ranks: one set of epoch lines, figures and checkpoints."""
    cmd = [sys.executable, "-m", "tinynet.distributed.run", "-n", "2", "--timeout", "300",
           str(ROOT / "examples" / "lenet.py"), "--distributed", "--data-dir", str(MNIST_DIR), "--subset", "512",
           "--epochs", "2", "--batch-size", "64", "--no-progress", "--test-batch-size", "256", "--out", str(tmp_path)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=330, cwd=ROOT,
                          env=dict(os.environ, PYTHONPATH=str(ROOT)))
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    assert output.count("epoch 2/2: train loss") == 1 and output.count("final test accuracy") == 1
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["epoch_1.npz", "epoch_2.npz", "last.npz"]
    assert (tmp_path / "curves.png").exists() and json.loads((tmp_path / "history.json").read_text())["train_loss"]


def test_an_example_started_on_several_ranks_without_distributed_stops_at_once(monkeypatch):
    import argparse
    from tinynet.experiment import UsageError, load_mnist
    monkeypatch.setenv("PMI_SIZE", "2")  # what mpiexec tells each of 2 ranks
    with pytest.raises(UsageError, match="started on 2 ranks .* without --distributed: every rank would train alone"):
        load_mnist(argparse.Namespace(distributed=False, device="cpu"))
