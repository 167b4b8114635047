"""The fused JAX engine's program: each epoch is one compiled program over Keras' own pure `train_step`/`test_step`.

K learning rates of one spec can share that program as vmapped lanes; cnnbench/engines/fused.py drives it.
JAX is imported inside functions only.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from typing import Any

from cnnbench.errors import UsageError

SUPPORTED_KERAS = ((3, 15), (3, 16))  # [low, high): the Keras versions whose trainer state layout this engine was checked against
MEMORY_FRACTION = 0.5  # share of the free device memory the lanes of one program may plan to use


def unfusable_reason(specs: Sequence[Any]) -> str | None:
    """Why these specs cannot be lanes of one program (None when they can: the same spec but for a float learning rate)."""

    def identity(spec) -> dict:
        doc = spec.to_dict()
        doc.pop("description", None)
        doc["training"].pop("learning_rate")
        return doc

    first = identity(specs[0])
    for spec in specs[1:]:
        if identity(spec) != first:
            return "the runs differ in more than the learning rate"
    for spec in specs:
        if not isinstance(spec.training.learning_rate, float) or not math.isfinite(spec.training.learning_rate):
            return f"learning rate {spec.training.learning_rate!r} is not a finite float"
    return None


def check_keras_version(version: str) -> None:
    """UsageError naming the supported range when the installed Keras is outside it."""
    try:
        found = tuple(int(part) for part in version.split(".")[:2])
    except ValueError:
        found = (0, 0)
    low, high = SUPPORTED_KERAS
    if not low <= found < high:
        raise UsageError(
            f"engine fused supports Keras {low[0]}.{low[1]} up to (not including) {high[0]}.{high[1]}, found {version[:20]}; "
            "use `engine` fit"
        )


def state_layout_problem(model) -> str | None:
    """What in Keras' JAX trainer state differs from what this engine relies on (None when all is as expected).

    Relied on: `train_step(state, data)` with state = (trainable, non_trainable, optimizer, metrics) value lists
    in the order of the model's variable lists, returned with the same structure, shapes and dtypes;
    `test_step` with (trainable, non_trainable, metrics); a float learning rate held as an optimizer variable.
    """
    import inspect

    import jax

    for name, expected in (("train_step", ["state", "data"]), ("test_step", ["state", "data"])):
        method = getattr(model, name, None)
        if method is None:
            return f"the model has no {name}"
        params = list(inspect.signature(method).parameters)
        if params != expected:
            return f"{name} takes {params}, expected {expected}"
    if lr_slot(model) is None:
        return "the optimizer holds no learning_rate variable"
    state = model_state(model)
    x = jax.ShapeDtypeStruct((2, *model.input_shape[1:]), "float32")
    y = jax.ShapeDtypeStruct((2,), "int32")
    try:
        _, out = jax.eval_shape(model.train_step, state, (x, y))
        _, tout = jax.eval_shape(model.test_step, (state[0], state[1], state[3]), (x, y))
    except Exception as exc:  # a changed signature or state shape shows up here
        return f"train_step/test_step no longer accept the (trainable, non_trainable, optimizer, metrics) state: {exc}"[:400]
    spec = jax.tree_util.tree_map(lambda a: (tuple(a.shape), str(a.dtype)), state)
    got = jax.tree_util.tree_map(lambda a: (tuple(a.shape), str(a.dtype)), tuple(out))
    if got != spec:
        return "train_step returns a state of another structure, shape or dtype than it takes"
    tspec = (spec[0], spec[1], spec[3])
    if jax.tree_util.tree_map(lambda a: (tuple(a.shape), str(a.dtype)), tuple(tout)) != tspec:
        return "test_step returns a state of another structure, shape or dtype than it takes"
    return None


def lr_slot(model) -> int | None:
    """Index of the optimizer's learning_rate variable in `optimizer.variables` (None when the rate is not a variable)."""
    for i, variable in enumerate(model.optimizer.variables):
        if variable.name == "learning_rate" and tuple(variable.shape) == ():
            return i
    return None


def model_state(model) -> tuple[list, list, list, list]:
    """The four value lists Keras' JAX trainer threads through train_step."""
    return (
        [v.value for v in model.trainable_variables],
        [v.value for v in model.non_trainable_variables],
        [v.value for v in model.optimizer.variables],
        [v.value for v in model.metrics_variables],
    )


def epoch_order(seed: int, epoch: int, n: int):
    """The training samples' order in epoch `epoch` (0-based): a permutation drawn from (seed, epoch) alone.

    So a lane's batches never depend on the other lanes, on resume, or on the process.
    """
    import numpy as np

    return np.random.default_rng([seed, epoch]).permutation(n).astype(np.int32)


_DEVICE_DATA: dict[int, tuple[Any, tuple]] = {}


def device_data(data) -> tuple:
    """The training and validation arrays on the default JAX device, put there once per process and dataset."""
    import jax

    key = id(data)
    if key not in _DEVICE_DATA:  # the data object is kept alive with its arrays, so its id is not reused
        arrays = tuple(jax.device_put(a) for a in (data.x_train, data.y_train, data.x_val, data.y_val))
        _DEVICE_DATA[key] = (data, arrays)
    return _DEVICE_DATA[key][1]


def free_device_bytes() -> int | None:
    """Free memory of the default JAX device (host memory available on the CPU); None when unknown."""
    import jax

    device = jax.devices()[0]
    if device.platform != "cpu":
        try:
            stats = device.memory_stats() or {}
            if "bytes_limit" in stats:
                return int(stats["bytes_limit"] - stats.get("bytes_in_use", 0))
        except Exception:
            return None
        return None
    try:
        with open("/proc/meminfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def lane_bytes(model, batch_size: int, summary) -> int:
    """A generous estimate of one lane's device memory: parameters with gradients and optimizer slots, and a
    batch's activations kept for the backward pass (float32)."""
    variables = sum(math.prod(v.shape) for v in model.trainable_variables) + sum(math.prod(v.shape) for v in model.non_trainable_variables)
    optimizer = sum(math.prod(v.shape) for v in model.optimizer.variables)
    activations = sum(math.prod(d for d in layer.output_shape if d) for layer in summary.layers)
    return 4 * (3 * variables + optimizer + 3 * batch_size * activations)


def lane_cap(model, batch_size: int, summary) -> int:
    """How many lanes one program may hold: MEMORY_FRACTION of the free device memory over `lane_bytes` (at least 1).

    CNNBENCH_FUSE_MEMORY_MB overrides the free memory (for tests and shared GPUs).
    """
    override = os.environ.get("CNNBENCH_FUSE_MEMORY_MB")
    free = int(float(override) * 2**20) if override else free_device_bytes()
    if free is None:
        return 1 << 30
    return max(1, int(MEMORY_FRACTION * free // max(lane_bytes(model, batch_size, summary), 1)))


def build_state(model, data, batch_size: int) -> None:
    """Build the model's metrics, compiled loss and optimizer as `fit` does before its first step."""
    try:
        model._symbolic_build(data_batch=(data.x_train[:batch_size], data.y_train[:batch_size]))
    except AttributeError:  # the private builder moved: build the same state through public calls
        model.optimizer.build(model.trainable_variables)
        model.evaluate(data.x_train[:batch_size], data.y_train[:batch_size], batch_size=batch_size, verbose=0)


def check_model(model, data, batch_size: int) -> None:
    """UsageError (one line, before any file is written) when the fused engine cannot drive this compiled model.

    Builds the model's metric, loss and optimizer state as fit does, then checks the Keras version, the
    backend, Flax NNX mode and the trainer state layout (`state_layout_problem`).
    """
    import keras

    check_keras_version(keras.__version__)
    if keras.backend.backend() != "jax":
        raise UsageError(f"engine fused needs the JAX backend, but Keras runs on {keras.backend.backend()}")
    if getattr(keras.config, "is_nnx_enabled", lambda: False)():
        raise UsageError("engine fused does not support Keras' Flax NNX mode; use `engine` fit")
    build_state(model, data, batch_size)
    problem = state_layout_problem(model)
    if problem:
        raise UsageError(f"engine fused cannot drive this Keras {keras.__version__}: {problem}; use `engine` fit")


class FusedTrainer:
    """Trains the compiled Keras `model` one compiled program per epoch, in K >= 1 lanes that differ in learning rate.

    `rates` None or of length 1: one lane, no vmap. Otherwise the state gets a leading lane axis and the
    epoch programs are vmapped; every lane sees the same batches (`epoch_order`), the lanes never mix.
    """

    def __init__(
        self, model, data, batch_size: int, seed: int, rates: Sequence[float] | None = None, shuffle: bool = True, checked: bool = False,
        lr_multiplier: Callable[[int], float] | None = None,
    ) -> None:
        import jax
        import jax.numpy as jnp

        if not checked:
            check_model(model, data, batch_size)
        self.model, self.data, self.batch_size, self.seed, self.shuffle = model, data, batch_size, seed, shuffle
        self.k = len(rates) if rates else 1
        self.vmapped = self.k > 1
        model.reset_metrics()
        self.metric_zeros = [jnp.asarray(v.value) for v in model.metrics_variables]
        self.xd, self.yd, self.xvd, self.yvd = device_data(data)
        state = model_state(model)
        slot = lr_slot(model)
        if self.vmapped:
            state = tuple([jnp.broadcast_to(v, (self.k, *jnp.shape(v))) for v in group] for group in state)
            state[2][slot] = jnp.asarray(rates, dtype=state[2][slot].dtype)
        elif rates:
            state[2][slot] = jnp.asarray(rates[0], dtype=state[2][slot].dtype)
        self.state = state
        # A schedule scales every lane's own rate by the same factor per epoch (cnnbench/schedule.py), as fit's callback does.
        self.lr_multiplier, self._slot, self._base_rate = lr_multiplier, slot, state[2][slot]
        train, val = self._programs()
        self._train = jax.jit(jax.vmap(train, in_axes=(0, None)) if self.vmapped else train)
        self._val = jax.jit(jax.vmap(val) if self.vmapped else val)

    def _programs(self):
        import jax
        import jax.numpy as jnp
        import keras

        model, B, zeros = self.model, self.batch_size, self.metric_zeros
        xd, yd, xvd, yvd = self.xd, self.yd, self.xvd, self.yvd
        nb, rem = divmod(int(xd.shape[0]), B)
        nvb, vrem = divmod(int(xvd.shape[0]), B)

        def logs_of(mv) -> dict:
            with keras.StatelessScope(state_mapping=list(zip(model.metrics_variables, mv, strict=True))):
                return {k: jnp.asarray(v) for k, v in model.get_metrics_result().items()}

        def train_epoch(state, perm):
            tv, ntv, ov, _ = state
            s = (tv, ntv, ov, list(zeros))  # reset_metrics(), as fit does at each epoch's start

            def step(s, idx):
                return model.train_step(s, (xd[idx], yd[idx]))[1], None

            if nb:
                s, _ = jax.lax.scan(step, s, perm[: nb * B].reshape(nb, B))
            if rem:  # fit's last, smaller batch: its own shape, weighted by its size in the loss tracker
                idx = perm[nb * B :]
                s = model.train_step(s, (xd[idx], yd[idx]))[1]
            return s, logs_of(s[3])

        def val_epoch(state):
            tv, ntv, ov, _ = state
            v = (tv, ntv, list(zeros))

            def step(v, i):
                batch = (jax.lax.dynamic_slice_in_dim(xvd, i * B, B), jax.lax.dynamic_slice_in_dim(yvd, i * B, B))
                return model.test_step(v, batch)[1], None

            if nvb:
                v, _ = jax.lax.scan(step, v, jnp.arange(nvb))
            if vrem:
                v = model.test_step(v, (xvd[nvb * B :], yvd[nvb * B :]))[1]
            # evaluate() leaves the validation metrics in the metric variables, and so does fit.
            return (tv, v[1], ov, v[2]), {f"val_{k}": val for k, val in logs_of(v[2]).items()}

        return train_epoch, val_epoch

    def order(self, epoch: int):
        import numpy as np

        n = len(self.data.x_train)
        return epoch_order(self.seed, epoch, n) if self.shuffle else np.arange(n, dtype=np.int32)

    def train_epoch(self, epoch: int) -> dict[str, Any]:
        """Run epoch `epoch`'s training program; returns its logs on the host (arrays of K values when vmapped)."""
        import jax

        if self.lr_multiplier is not None:
            self.state[2][self._slot] = self._base_rate * self.lr_multiplier(epoch)
        self.state, logs = self._train(self.state, jax.device_put(self.order(epoch)))
        return jax.device_get(logs)

    def val_epoch(self) -> dict[str, Any]:
        import jax

        self.state, logs = self._val(self.state)
        return jax.device_get(logs)

    def write_back(self, lane: int = 0) -> None:
        """Put lane `lane`'s state into the Keras model's variables (what fit's jax_state_sync does)."""
        model = self.model
        groups = (model.trainable_variables, model.non_trainable_variables, model.optimizer.variables, model.metrics_variables)
        for variables, values in zip(groups, self.state, strict=True):
            for variable, value in zip(variables, values, strict=True):
                variable.assign(value[lane] if self.vmapped else value)

    def fit(
        self,
        epochs: int,
        timer,
        lane_callbacks: Sequence[Any],
        on_lane_end: Callable[[int], None],
        stopped: Callable[[int], bool],
        initial_epoch: int = 0,
    ) -> None:
        """Train epochs `initial_epoch` .. `epochs` - 1, driving the epoch- and test-level callbacks as fit does.

        `timer` (an EpochTimer, shared: the lanes share each epoch's program) is driven once per epoch;
        `lane_callbacks[k]` is lane k's CallbackList, given lane k's logs after lane k's state is written
        back into the model. `stopped(k)` says whether lane k ended at this epoch (diverged, stopped);
        `on_lane_end(k)` is called when a lane ends, with the model holding its final state.
        """
        import numpy as np

        model = self.model
        live = list(range(self.k))
        timer.on_train_begin()
        for k in live:
            lane_callbacks[k].on_train_begin()
        for epoch in range(initial_epoch, epochs):
            timer.on_epoch_begin(epoch)
            for k in live:
                lane_callbacks[k].on_epoch_begin(epoch)
            logs = self.train_epoch(epoch)
            timer.on_test_begin()
            for k in live:
                lane_callbacks[k].on_test_begin()
            val_logs = self.val_epoch()
            timer.on_test_end()
            for k in live:
                lane_callbacks[k].on_test_end()
            timer.on_epoch_end(epoch)
            for k in list(live):
                lane_logs = {name: float(np.asarray(v)[k] if self.vmapped else v) for name, v in {**logs, **val_logs}.items()}
                self.write_back(k)
                model.stop_training = False
                lane_callbacks[k].on_epoch_end(epoch, lane_logs)
                if model.stop_training or stopped(k) or epoch == epochs - 1:
                    live.remove(k)
                    self._end_lane(k, lane_callbacks[k], on_lane_end)
            if not live:
                break
        timer.on_train_end()

    def _end_lane(self, k: int, callbacks, on_lane_end) -> None:
        self.write_back(k)
        self.model.optimizer.finalize_variable_values(self.model.trainable_weights)
        callbacks.on_train_end()
        on_lane_end(k)
