"""What a task checks of its data before training: what the data module says it yields (the shape
of one example, the number of classes, the vocabulary; read from file headers, nothing loaded)
against the network, first by the network's own arguments (exact for regkit's networks, which
name the argument at fault), then by a dry forward of a tiny batch (any network, also one given by
``class_path``). Parts that disagree stop before a run starts, naming both keys.

The dry forward leaves no trace: no gradients, the random state and every buffer (running
statistics, spectral-norm vectors, step counters) restored, each module's train/eval mode restored.
"""
from __future__ import annotations

import contextlib
import inspect
from typing import Any, Callable, Iterator, Optional

import lightning as L
import torch
from torch import nn

from regkit.errors import BadInput, describe
from regkit.loggers.interval import attached_trainer

TASK = "model.init_args"
NETWORK = f"{TASK}.network"
GENERATOR, DISCRIMINATOR = f"{TASK}.generator", f"{TASK}.discriminator"


def describe_examples(shape: tuple[int, ...]) -> str:
    """``(1, 28, 28)`` -> ``"1-channel 28x28 images"``."""
    if len(shape) == 3:
        return f"{shape[0]}-channel {shape[1]}x{shape[2]} images"
    return f"examples of shape {tuple(shape)}"


def data_name(datamodule: Any) -> str:
    return f"data ({type(datamodule).__name__})"


def has_lazy_parameters(module: nn.Module) -> bool:
    """A lazy module's weights appear at its first forward (drawing random numbers): no dry run then."""
    return any(torch.nn.parameter.is_lazy(p) for p in module.parameters())


def eagerly() -> contextlib.AbstractContextManager[Any]:
    """A network compiled by the task's ``compile`` switch runs eagerly inside: a dry forward must
    not compile it (for a batch of two) before the run compiles it for its real batches."""
    set_stance = getattr(torch.compiler, "set_stance", None)  # torch >= 2.6
    return set_stance("force_eager") if set_stance is not None else contextlib.nullcontext()


@contextlib.contextmanager
def untouched(module: nn.Module, training: bool) -> Iterator[None]:
    """Run the block with ``module`` in train (or eval) mode, without gradients, then restore its
    buffers, the modes of its submodules and the random state, so a dry forward changes nothing."""
    modes = [(m, m.training) for m in module.modules()]
    buffers = [(b, b.clone()) for b in module.buffers()]
    devices = [torch.cuda.current_device()] if torch.cuda.is_available() and torch.cuda.is_initialized() else []
    try:
        with torch.random.fork_rng(devices=devices), torch.no_grad(), eagerly():
            module.train(training)
            yield
    finally:
        with torch.no_grad():
            for buffer, saved in buffers:
                buffer.copy_(saved)
        for m, mode in modes:
            m.training = mode


def example_batch(module: nn.Module, shape: tuple[int, ...], size: int) -> torch.Tensor:
    """Zeros of ``(size, *shape)`` on the device and in the floating dtype of ``module``'s weights."""
    weight = next((p for p in module.parameters() if p.is_floating_point()), None)
    device = weight.device if weight is not None else torch.device("cpu")
    dtype = weight.dtype if weight is not None else torch.float32
    return torch.zeros(size, *shape, device=device, dtype=dtype)


def smallest_train_batch(datamodule: Any, world_size: int) -> Optional[int]:
    method = getattr(datamodule, "smallest_train_batch", None)
    return method(world_size) if callable(method) else None


def dry_run(module: nn.Module, training: bool, smallest_batch: Optional[int], run: Callable[[int], Any],
            key: str, data: str, batch_source: str) -> Any:
    """``run(n)`` (a forward of a batch of n examples through ``module``) with ``n = 2``, or 1 when
    training meets a batch of one (``smallest_batch``), leaving ``module`` untouched. Returns
    ``(n, output)``, or None when the module has lazy weights.

    Raises:
        BadInput: keyed ``key``, with the error of the forward (batch norm cannot train on one
            example: that one names ``batch_source``, where the batch of one comes from).
    """
    if has_lazy_parameters(module):
        return None
    n = 1 if training and smallest_batch == 1 else 2
    try:
        with untouched(module, training):
            return n, run(n)
    except Exception as err:
        if n == 1:
            try:
                with untouched(module, training):
                    run(2)
            except Exception:
                pass
            else:  # fine on two examples: it is the batch of one
                raise BadInput(f"cannot train on a batch of one example, and {data} gives one ({batch_source}): "
                               f"{describe(err)}", key) from err
        mode = "training" if training else "evaluation"
        raise BadInput(f"fails in {mode} on a batch of {n} of what {data} yields: {describe(err)}", key) from err


def check_mismatch(module: nn.Module, method: str, shape: tuple[int, ...], key: str, data: str) -> None:
    """Ask a regkit network (``input_mismatch`` / ``output_mismatch``) whether one of its arguments
    disagrees with examples of ``shape``; refuse naming that argument."""
    ask = getattr(module, method, None)
    found = ask(shape) if callable(ask) else None
    if found is not None:
        argument, value, fits = found
        raise BadInput(f"is {value} but {data} yields {describe_examples(shape)} ({argument}: {fits} fits them)",
                       f"{key}.{argument}")


def check_attached_data(task: Any, stage: str) -> None:
    """``task.check_data`` against the data module of the trainer ``task`` is attached to (the
    Lightning ``setup`` hook), for plain-Trainer users: regkit's CLI has checked it before the run."""
    trainer: Optional[L.Trainer] = attached_trainer(task)
    datamodule = getattr(trainer, "datamodule", None)
    if trainer is not None and datamodule is not None:
        task.check_data(datamodule, world_size=trainer.world_size, training=stage == "fit")


def batch_of_one_source(datamodule: Any) -> str:
    return f"data.init_args.batch_size: {getattr(datamodule, 'batch_size', '?')}"


def argument_key(module: nn.Module, key: str, argument: str) -> str:
    """``key.argument`` when ``module``'s class takes ``argument`` (a registry network), else ``key``."""
    try:
        return f"{key}.{argument}" if argument in inspect.signature(type(module)).parameters else key
    except (TypeError, ValueError):
        return key


def check_classifier_data(task: Any, datamodule: Any, world_size: int = 1, training: bool = True) -> None:
    """A classifier against its data: ``num_classes`` and the network's outputs cover the labels
    (``datamodule.num_classes``), the network takes examples of ``datamodule.example_shape`` (its
    own arguments, then a dry forward) and gives (N, classes) logits."""
    data = data_name(datamodule)
    classes = getattr(datamodule, "num_classes", None)
    if isinstance(classes, int) and task.num_classes < classes:
        raise BadInput(f"is {task.num_classes} but {data} has {classes} classes (labels 0..{classes - 1})",
                       f"{TASK}.num_classes")
    shape = getattr(datamodule, "example_shape", None)
    if shape is None:
        return
    network = task.network
    check_mismatch(network, "input_mismatch", tuple(shape), NETWORK, data)
    smallest = smallest_train_batch(datamodule, world_size) if training else None
    result = dry_run(network, training, smallest, lambda n: task(example_batch(network, shape, n)), NETWORK, data,
                     batch_of_one_source(datamodule))
    if result is None:
        return
    n, logits = result
    if logits.dim() != 2 or logits.shape[0] != n:
        raise BadInput(f"gives outputs of shape {tuple(logits.shape)} for a batch of {n} of what {data} yields; "
                       "a classifier needs logits of shape (N, classes)", NETWORK)
    if isinstance(classes, int) and logits.shape[1] < classes:
        raise BadInput(f"gives {logits.shape[1]} logits but {data} has {classes} classes (labels 0..{classes - 1})",
                       argument_key(network, NETWORK, "out_features"))


def check_language_model_data(task: Any, datamodule: Any, world_size: int = 1, training: bool = True) -> None:
    """A language model against its data: the network's ``vocab_size`` is the data's, and a dry
    forward of a tiny token batch gives (N, T, vocab) logits."""
    data = data_name(datamodule)
    vocab = getattr(datamodule, "vocab_size", None)
    network = task.network
    ours = getattr(network, "vocab_size", None)
    if isinstance(vocab, int) and isinstance(ours, int) and vocab != ours:
        raise BadInput(f"is {ours} but {data} has {vocab} word types (vocab_size: {vocab} fits them)",
                       f"{NETWORK}.vocab_size")
    if not isinstance(vocab, int):
        return

    def forward(n: int) -> Any:
        weight = next(iter(network.parameters()), None)
        tokens = torch.zeros(n, 2, dtype=torch.long, device=weight.device if weight is not None else None)
        return task(tokens)

    result = dry_run(network, training, None, forward, NETWORK, data, batch_of_one_source(datamodule))
    if result is None:
        return
    logits = getattr(result[1], "logits", result[1])
    if not isinstance(logits, torch.Tensor) or logits.dim() != 3 or logits.shape[-1] != vocab:
        shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise BadInput(f"gives logits of shape {shape} for (2, 2) tokens but {data} has {vocab} word types: "
                       f"(N, T, {vocab}) expected", NETWORK)


def check_gan_data(task: Any, datamodule: Any, world_size: int = 1, training: bool = True) -> None:
    """A GAN against its data: G makes images of the real images' shape and D takes them (their
    arguments, then a dry forward of each), D giving one logit per image."""
    shape = getattr(datamodule, "example_shape", None)
    if shape is None:
        return
    shape, data = tuple(shape), data_name(datamodule)
    generator, discriminator = task.generator, task.discriminator
    check_mismatch(generator, "output_mismatch", shape, GENERATOR, data)
    check_mismatch(discriminator, "input_mismatch", shape, DISCRIMINATOR, data)
    smallest = smallest_train_batch(datamodule, world_size) if training else None
    latent = getattr(generator, "latent_dim", None)
    if isinstance(latent, int):
        made = dry_run(generator, training, smallest, lambda n: generator(example_batch(generator, (latent,), n)),
                       GENERATOR, data, batch_of_one_source(datamodule))
        if made is not None and (not isinstance(made[1], torch.Tensor) or tuple(made[1].shape[1:]) != shape):
            got = tuple(made[1].shape[1:]) if isinstance(made[1], torch.Tensor) else type(made[1]).__name__
            raise BadInput(f"makes images of shape {got} but {data} yields {describe_examples(shape)}", GENERATOR)
    judged = dry_run(discriminator, training, smallest, lambda n: discriminator(example_batch(discriminator, shape, n)),
                     DISCRIMINATOR, data, batch_of_one_source(datamodule))
    if judged is not None:
        n, logits = judged
        if not isinstance(logits, torch.Tensor) or tuple(logits.shape) not in ((n,), (n, 1)):
            got = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
            raise BadInput(f"gives outputs of shape {got} for {n} of the images {data} yields; one logit per image "
                           "expected", DISCRIMINATOR)
