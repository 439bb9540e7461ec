"""The shared training loop (train/loop.py) on a one-weight model and a list of batches: where it logs,
checkpoints and stops, how it skips non-finite steps, and that a run stopped and resumed from its
state walks the same batches as one that never stopped."""

import math

import pytest
import torch

from speechmpq.errors import SpeechmpqError
from speechmpq.train.loop import LoopConfig, run_steps, warmup_cosine


class _Sampler:
    """Three batches per epoch, numbered epoch * 10 + position; starts at start_batch."""

    epoch, start_batch = 0, 0

    def __iter__(self):
        yield from [self.epoch * 10 + i for i in range(3)][self.start_batch:]


class _Bar:
    def update(self, n):
        pass


class _Hooks:
    def __init__(self, poisoned=()):
        self.model = torch.nn.Linear(1, 1, bias=False)
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=0.1)
        self.schedule = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda s: 1.0)
        self.sampler, self.bar, self.poisoned = _Sampler(), _Bar(), set(poisoned)
        self.events: list[tuple[str, int]] = []

    def loader(self, epoch):
        return iter(self.sampler)

    def forward(self, batch):
        loss = self.model(torch.ones(1, 1)).sum() * (math.nan if batch in self.poisoned else 1.0)
        return loss, batch

    def count(self, batch, loss, parts, step_start):
        self.events.append(("batch", parts))

    def log(self, step):
        self.events.append(("log", step))

    def evaluate(self, step):
        pass

    def checkpoint(self):
        self.events.append(("checkpoint", len([e for e in self.events if e[0] == "batch"])))


def _state():
    return {"step": 0, "epoch": 0, "batch_in_epoch": 0}


def _config(**changes):
    return LoopConfig(**{"name": "test", "end": 7, "stop": 7, "grad_clip": 1.0, "log_every": 3,
                         "checkpoint_every": 2, **changes})


def test_logs_and_checkpoints_come_when_due_and_epochs_roll_over():
    hooks, state = _Hooks(), _state()
    run_steps(_config(), hooks, state)
    assert [p for kind, p in hooks.events if kind == "batch"] == [0, 1, 2, 10, 11, 12, 20]
    assert [p for kind, p in hooks.events if kind == "log"] == [3, 6, 7]
    assert [p for kind, p in hooks.events if kind == "checkpoint"] == [2, 4, 6, 7]
    assert state == {"step": 7, "epoch": 2, "batch_in_epoch": 1}


def test_a_stopped_run_resumed_from_its_state_walks_the_same_batches():
    straight = _Hooks()
    run_steps(_config(), straight, _state())
    first, state = _Hooks(), _state()
    run_steps(_config(stop=4), first, state)
    assert state["step"] == 4 and first.events[-1] == ("checkpoint", 4)  # checkpointed at the stop
    second = _Hooks()
    run_steps(_config(), second, state)
    batches = [p for hooks in (first, second) for kind, p in hooks.events if kind == "batch"]
    assert batches == [p for kind, p in straight.events if kind == "batch"]


def test_a_phase_can_leave_the_log_at_stop_and_the_checkpoint_at_end_to_its_trainer():
    hooks = _Hooks()
    run_steps(_config(stop=5, log_at_stop=False, checkpoint_at_end=False), hooks, _state())
    assert [p for kind, p in hooks.events if kind == "log"] == [3]
    assert [p for kind, p in hooks.events if kind == "checkpoint"] == [2, 4, 5]
    hooks = _Hooks()
    run_steps(_config(log_at_stop=False, checkpoint_at_end=False), hooks, _state())
    assert [p for kind, p in hooks.events if kind == "checkpoint"] == [2, 4, 6]


def test_non_finite_steps_are_skipped_counted_and_stop_the_run_when_they_persist():
    hooks, state = _Hooks(poisoned={1, 10}), _state()
    before = hooks.model.weight.detach().clone()
    run_steps(_config(end=2, stop=2), hooks, state)
    assert state["skipped_steps"] == 1
    assert not torch.equal(hooks.model.weight, before) and torch.isfinite(hooks.model.weight).all()
    hooks, state = _Hooks(poisoned={0, 1, 2, 10}), _state()
    with pytest.raises(SpeechmpqError, match="test: 3 steps in a row had a non-finite loss"):
        run_steps(_config(max_skipped_in_a_row=3), hooks, state)
    assert state["skipped_steps"] == 3 and torch.isfinite(hooks.model.weight).all()


def test_loop_config_is_validated():
    with pytest.raises(ValueError, match="stop"):
        _config(stop=8)
    with pytest.raises(ValueError, match="log_every"):
        _config(log_every=0)
    with pytest.raises(ValueError, match="max_skipped_in_a_row"):
        _config(max_skipped_in_a_row=0)


def test_warmup_then_cosine_to_the_final_ratio():
    factors = [warmup_cosine(step, 10, 2, 0.05) for step in range(11)]
    assert factors[:3] == [0.5, 1.0, 1.0]
    assert all(a >= b for a, b in zip(factors[1:], factors[2:], strict=False))
    assert factors[10] == pytest.approx(0.05)
