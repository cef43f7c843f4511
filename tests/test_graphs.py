"""trainer.cuda_graphs on a machine without a GPU: the decision and its one log line per reason,
eager training where graphs are impossible, and the bookkeeping around a capture (static
buffers, the undone warm-up, the short last batch, a dynamic shape, a failed capture) checked
with a CPU stand-in for the capture that must give exactly the eager numbers."""

from __future__ import annotations

import functools
import logging

import numpy as np
import pytest
import torch

from segact.config import instantiate_named, run_settings
from segact.nn.heads import build_head
from segact.runs.runner import load_dataset, train
from segact.training import graphs
from segact.training.fitting import (
    Trainable,
    build_optimizer,
    device_batches,
    eager_step,
    launch_evaluate,
    launch_train_epoch,
)
from segact.training.graphs import CudaGraphs, EvalGraph, GraphPlan, TrainGraph, graph_plan
from tests.helpers import compose_config

CPU = torch.device("cpu")
CUDA = torch.device("cuda")  # only named: nothing runs there


@pytest.mark.parametrize(
    ("mode", "device", "options", "reason"),
    [
        ("off", CUDA, {}, "trainer.cuda_graphs=off"),
        ("auto", CPU, {}, "need a CUDA device; this run trains on cpu"),
        ("on", CPU, {}, "need a CUDA device"),
        ("auto", CUDA, {"compile": True}, "trainer.compile=true"),
        ("auto", CUDA, {"augment": True}, "augmentation runs on the host"),
        ("auto", CUDA, {"optimizer": "torch.optim.SGD"}, "optimizer torch.optim.SGD cannot be"),
    ],
)
def test_each_reason_rules_graphs_out_and_is_named(mode, device, options, reason):
    plan = graph_plan(mode, device, **options)
    assert not plan.use and reason in plan.reason


@pytest.mark.parametrize("optimizer", ["torch.optim.Adam", "torch.optim.AdamW"])
def test_graphs_on_cuda_with_adam(optimizer):
    assert graph_plan("auto", CUDA, optimizer=optimizer) == GraphPlan(True)
    assert graphs.capturable_optimizer(optimizer, CUDA)
    assert not graphs.capturable_optimizer(optimizer, CPU)
    assert not graphs.capturable_optimizer("torch.optim.SGD", CUDA)


@pytest.mark.parametrize(
    ("mode", "device", "level"),
    [("on", CPU, logging.WARNING), ("auto", CUDA, logging.INFO), ("auto", CPU, logging.DEBUG)],
)
def test_one_log_line_louder_when_graphs_were_asked_for(caplog, mode, device, level):
    caplog.set_level(logging.DEBUG, logger="segact")
    graphs.announce(GraphPlan(False, "the reason"), mode, device)
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (level, "CUDA graphs off, training eagerly: the reason")
    ]


@pytest.mark.slow
def test_a_cpu_run_asked_for_graphs_trains_eagerly_with_one_warning(tmp_path, caplog):
    caplog.set_level(logging.INFO)
    summary = train(compose_config("trainer.cuda_graphs=on", "trainer.max_epochs=1"), tmp_path)
    assert summary["status"] == "ok"
    lines = [r for r in caplog.records if "CUDA graphs off" in r.getMessage()]
    assert len(lines) == 1 and lines[0].levelno == logging.WARNING  # once for both folds
    assert "this run trains on cpu" in lines[0].getMessage()


def test_cuda_graphs_is_a_closed_choice():
    assert compose_config("trainer.cuda_graphs=off").trainer.cuda_graphs == CudaGraphs.off
    with pytest.raises(Exception, match="cuda_graphs"):
        compose_config("trainer.cuda_graphs=sometimes")


# --- the capture's bookkeeping, with a CPU stand-in for torch.cuda.graph -------------------------


@functools.cache
def _parts():
    cfg = compose_config()
    data = load_dataset(cfg)
    head = build_head(cfg.head, cfg.activation)
    return cfg, data, head, instantiate_named(cfg.loss)


def fresh() -> Trainable:
    cfg, data, head, _ = _parts()
    torch.manual_seed(0)
    return Trainable.build(run_settings(cfg), (data.in_channels, head.out_channels), CPU, 0)


def graphed(trainable: Trainable, capture=graphs.eager_capture) -> TrainGraph:
    _, _, head, loss = _parts()
    step = functools.partial(eager_step, trainable.forward, head, loss, trainable.optimizer)
    return TrainGraph(step, trainable.model, trainable.optimizer, 4, capture=capture)


def epoch(trainable: Trainable):
    _, data, head, loss = _parts()
    order = np.arange(10)  # batches of 4, 4 and a short 2
    return launch_train_epoch(trainable, head, loss, data, order, 4).result()


def assert_same_state(a: Trainable, b: Trainable) -> None:
    for (name, x), y in zip(
        a.model.state_dict().items(), b.model.state_dict().values(), strict=True
    ):
        assert torch.equal(x, y), name
    for key, state in a.optimizer.state_dict()["state"].items():
        for name, value in state.items():
            assert torch.equal(value, b.optimizer.state_dict()["state"][key][name]), name


@pytest.mark.parametrize("eager_epochs_first", [0, 1])
def test_graphed_steps_give_the_eager_numbers(eager_epochs_first):
    """Captured on a fresh optimizer (its warm-up state back to zeros) or a trained one (back to
    its values); the short last batch of each epoch eager; equal to the last bit."""
    eager, replayed = fresh(), fresh()
    for _ in range(eager_epochs_first):
        assert epoch(eager) == epoch(replayed)
    replayed.train_graph = graphed(replayed)
    for _ in range(2):
        assert epoch(eager) == epoch(replayed)
    assert replayed.train_graph.replay is not None and not replayed.train_graph.failed
    assert_same_state(eager, replayed)


def test_an_epoch_is_read_back_once():
    _, data, head, loss = _parts()
    pending = launch_train_epoch(fresh(), head, loss, data, np.arange(10), 4)
    assert pending.values.shape == (2,)  # loss and gradient norm, one transfer
    assert pending.result().train_loss > 0


def test_a_failed_capture_is_undone_and_the_fold_trains_eagerly(caplog):
    def failing(fn):
        fn()  # a warm-up step that must be undone
        raise RuntimeError("operation not permitted when stream is capturing\nmore")

    eager, fallback = fresh(), fresh()
    fallback.train_graph = graphed(fallback, failing)
    with caplog.at_level(logging.WARNING):
        assert epoch(eager) == epoch(fallback)
        assert epoch(eager) == epoch(fallback)
    assert_same_state(eager, fallback)
    assert [r.getMessage() for r in caplog.records] == [
        "fold 0: the training step runs eagerly from now on: capture failed (RuntimeError: "
        "operation not permitted when stream is capturing)"
    ]


def test_a_dynamic_shape_falls_back_to_eager_with_one_line(caplog):
    trainable = fresh()
    graph = graphed(trainable)
    x, y = torch.zeros(4, 3, 32, 32), torch.zeros(4, 1, 32, 32)
    assert graph.fits(x, y)
    assert not graph.fits(torch.zeros(2, 3, 32, 32), torch.zeros(2, 1, 32, 32))  # short: quiet
    assert not caplog.records
    with caplog.at_level(logging.WARNING):
        assert not graph.fits(torch.zeros(4, 3, 48, 48), torch.zeros(4, 1, 48, 48))
        assert not graph.fits(x, y)  # eager from now on
    assert len(caplog.records) == 1
    assert "a dynamic shape ((4, 3, 48, 48) after (4, 3, 32, 32))" in caplog.records[0].getMessage()


def test_graphed_evaluation_gives_the_eager_sweep():
    cfg, data, head, _ = _parts()
    trainable = fresh()
    epoch(trainable)

    def predict(images):
        logits = trainable.forward(images)
        return logits, head.probability(logits)

    graph = EvalGraph(predict, 4, capture=graphs.eager_capture)
    indices = np.arange(2, 12)  # batches of 4, 4 and a short 2
    thresholds = list(cfg.eval.thresholds)
    plain = launch_evaluate(trainable.forward, head, data, indices, thresholds, 4, 15).result()
    replayed = launch_evaluate(
        trainable.forward, head, data, indices, thresholds, 4, 15, graph
    ).result()
    assert plain.metrics == replayed.metrics
    assert plain.table.equals(replayed.table)


def test_batches_gathered_on_the_device_equal_data_batch():
    _, data, _, _ = _parts()
    resident = data.resident(CPU)  # raw arrays as tensors, as on a GPU
    order = np.array([5, 1, 7, 2, 0, 11, 3])
    for (x, y), start in zip(device_batches(resident, order, 3, CPU), range(0, 7, 3), strict=True):
        want_x, want_y = data.batch(order[start : start + 3], CPU)
        assert torch.equal(x, want_x) and torch.equal(y, want_y)


def test_the_cpu_optimizer_keeps_a_float_lr():
    cfg = compose_config()
    optimizer = build_optimizer(run_settings(cfg).optimizer, torch.nn.Linear(2, 1), CPU)
    assert optimizer.param_groups[0]["lr"] == cfg.trainer.lr
    assert not optimizer.param_groups[0]["capturable"]
