"""The recipe key of an error raised while LightningCLI instantiates the recipe's classes: the key that
holds the arguments of the deepest recipe-named class whose constructor is in the traceback
(``model.init_args.network.hidden`` when the constructor itself named the argument).

Only bad input is reported this way (two lines naming the key, exit 2); a bug shows its traceback
and exits 1. What is bad input (:func:`regkit.errors.is_bad_input`, the one rule for the whole
command: parsing, component specs, constructors):

* a :class:`~regkit.errors.RegkitError` anywhere in the error's chain of causes (``raise ... from``):
  regkit's own checks (``check()``, ``BadInput``, an unknown component or argument);
* an error first raised as a ``ValueError`` or ``OSError``, wherever it was raised: regkit's
  constructors refuse a value with ``ValueError`` as torch's do (``p must be a probability``), and a
  data module names a missing file with ``FileNotFoundError``;
* an error first raised as a ``TypeError``, ``OverflowError``, jsonargparse's ``ArgumentError`` or
  Lightning's ``MisconfigurationException`` (``accelerator: gpu`` on a machine without one) outside
  regkit's own code, i.e. a library refusing the value it was given;
* while parsing (before anything is built), any error jsonargparse reports that was first raised
  outside regkit's own code: it refuses an unknown option with a ``KeyError``, a ``class_path``
  that does not import with an ``ImportError`` or ``AttributeError``.

Everything else is a bug, whoever raised it: ``AttributeError``, ``KeyError``, ``IndexError``,
``AssertionError``, ``RuntimeError``, ``NotImplementedError``, a ``TypeError`` raised in regkit's
own code (a wrong call). ``REGKIT_DEBUG=1`` shows the traceback of bad input too.
"""
from __future__ import annotations

import contextlib
from typing import Any, Iterator, Mapping

from lightning.pytorch.utilities.exceptions import MisconfigurationException

from regkit.cli.recipe_checks import class_nodes
from regkit.errors import BadInput, RegkitError, describe, first_raised, is_bad_input


def _class_keys(config: Any) -> dict[type, list[str]]:
    """Every class a recipe names (``class_path`` nodes and registry component specs), with the keys
    that hold its arguments."""
    from lightning.pytorch import Trainer
    from lightning.pytorch.callbacks import ModelCheckpoint

    keys: dict[type, list[str]] = {}
    for key, cls, _ in class_nodes(config):
        keys.setdefault(cls, []).append(f"{key}.init_args")
    keys.setdefault(Trainer, []).append("trainer")  # argument groups, not class_path nodes
    keys.setdefault(ModelCheckpoint, []).append("checkpoint")

    def specs(value: Any, key: str) -> None:
        if hasattr(value, "as_dict") and not isinstance(value, type):
            value = value.as_dict()
        if hasattr(value, "entry") and hasattr(value, "kind") and hasattr(value, "kwargs"):
            try:
                obj = value.entry.obj
            except Exception:  # an unknown name is reported while parsing
                return
            if isinstance(obj, type):
                keys.setdefault(obj, []).append(key)
            value = value.kwargs
        if isinstance(value, Mapping):
            for k, v in value.items():
                specs(v, f"{key}.{k}" if key else str(k))
        elif isinstance(value, (list, tuple)):
            for i, v in enumerate(value):
                specs(v, f"{key}.{i}" if key else str(i))

    specs(config, "")
    return keys


def _frames_self(err: BaseException) -> list[Any]:
    """The ``self`` of every constructor frame in the traceback of ``err`` and of its causes, outermost
    first."""
    found = []
    for e in _chain(err):  # a cause's traceback continues below where its successor was raised
        tb = e.__traceback__
        while tb is not None:
            frame = tb.tb_frame
            if frame.f_code.co_name == "__init__" and "self" in frame.f_locals:
                found.append(frame.f_locals["self"])
            tb = tb.tb_next
    return found


def key_of_error(err: BaseException, config: Any) -> str:
    """The recipe key that holds the arguments of the deepest recipe-named class whose constructor
    is in the traceback of ``err`` ("" when none is)."""
    keys = _class_keys(config)
    best = ""
    for obj in _frames_self(err):
        candidates = keys.get(type(obj), [])
        if len(candidates) == 1 or (candidates and not best):
            best = candidates[0]
        elif candidates:  # the same class under several keys: the one below what we have
            below = [k for k in candidates if k.startswith(best + ".")]
            best = below[0] if len(below) == 1 else best
    return best


def _chain(err: BaseException) -> list[BaseException]:
    """``err`` and the errors it was raised from, outermost first."""
    chain: list[BaseException] = []
    while err is not None and err not in chain:
        chain.append(err)
        err = err.__cause__ or err.__context__  # type: ignore[assignment]
    return chain


@contextlib.contextmanager
def reported_against_keys(config: Any) -> Iterator[None]:
    """Turn bad input a constructor raises inside the block (see above) into a :class:`BadInput`
    whose key is the recipe key holding that class's arguments (``model.init_args.network.hidden``
    when the constructor itself named the argument); a bug propagates as it was first raised."""
    try:
        yield
    except RegkitError as err:
        if err.key.split(".")[0] in ("model", "data", "trainer") or not err.key:
            raise
        key = key_of_error(err, config)
        raise err.under(key) from err
    except Exception as err:
        if not is_bad_input(err, also=(MisconfigurationException,)):
            raise first_raised(err) from None  # its own traceback, not jsonargparse's wrapping of it
        key = key_of_error(err, config)
        chain = _chain(err)
        inner = [e for e in chain if isinstance(e, RegkitError)]
        if inner:
            raise inner[-1].under(key) from err
        # the original error: jsonargparse wraps constructor errors in its own long report
        raise BadInput(describe(chain[-1]), key) from err
