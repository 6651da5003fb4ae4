"""Word-level language modelling with truncated backpropagation through time."""
from __future__ import annotations

from typing import Any, Optional

import torch
import torch.nn.functional as F
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torchmetrics.text import Perplexity

from regkit.components.mc_dropout import mc_dropout
from regkit.networks.rnn import detach_state
from regkit.registry import ConstraintSpec, NetworkSpec, PenaltySpec
from regkit.tasks.base import RegularizedTask, default_optimizer, save_recipe
from regkit.tasks.data_checks import check_language_model_data
from regkit.tasks.speed import CompileSwitch, apply_switches
from regkit.errors import check


class LanguageModel(RegularizedTask):
    """Next-token language model over a continuous token stream, scored by perplexity (Zaremba et al., 2014).

    Batches are consecutive windows ``(inputs, targets)`` of ``(N, T)`` tokens (e.g. from
    :class:`regkit.data.PTBDataModule`). The recurrent state at the end of one window starts the
    next one, detached so gradients stop at the window boundary (truncated BPTT); it is reset at the
    start of every epoch and kept separately for training, validation and test. Gradient clipping
    is the trainer's (``trainer.gradient_clip_val``, e.g. 0.25 or 5). Validation and test run in
    eval mode, without dropout. Penalties get the context ``outputs`` / ``dropped_outputs`` (the
    last RNN layer's outputs before / after output dropout) and ``time_dim=1``, for AR and TAR.

    Args:
        network: a language-model network returning ``LMOutput`` (e.g. ``{name: rnn_lm, ...}``).
        optimizer, lr_scheduler, penalties, constraints: see :class:`RegularizedTask`.
        mc_samples: T > 0 adds MC-dropout evaluation at test time (Gal & Ghahramani, 2016):
            ``test/mc_ppl`` is the perplexity of the mean of T stochastic passes' probabilities,
            each pass carrying its own recurrent state, logged next to the deterministic
            ``test/ppl``. Costs T extra forward passes per test window.
        regularize: rules that place components inside the network (regkit/rules/, docs/surgery.md).
        compile: ``torch.compile`` the network: ``true``, or ``{mode, fullgraph, dynamic, backend}``
            (docs/speed.md; a fused nn.LSTM runs eagerly between graphs, ``mode: cell_loop`` compiles
            whole). Off by default.

    ``regkit predict`` scores the data module's predict stream (PTB: the test split), one dict of
    ``(L, N)`` tensors, column n being the n-th of the N parallel streams (so ``t.T.flatten()`` is
    the corpus order): ``targets`` (the next token), ``nll`` (its negative log-likelihood in nats;
    ``nll.mean().exp()`` is the perplexity), ``top1`` (the most likely next token) and, with
    ``mc_samples``, ``mc_nll`` under the mean of T stochastic passes.
    """

    def __init__(
        self,
        network: NetworkSpec,
        optimizer: OptimizerCallable = default_optimizer,
        lr_scheduler: Optional[LRSchedulerCallable] = None,
        penalties: list[PenaltySpec] = [],
        constraints: list[ConstraintSpec] = [],
        mc_samples: int = 0,
        regularize: list[dict[str, Any]] = [],
        compile: CompileSwitch = False,
    ) -> None:
        super().__init__(optimizer, lr_scheduler, penalties, constraints)
        check(locals(), non_negative="mc_samples")
        if mc_samples < 0:
            raise ValueError(f"mc_samples must be >= 0, got {mc_samples}")
        network = NetworkSpec.parse(network)
        self.network = network.build()
        rules = self.apply_rules(regularize)
        save_recipe(self, **{"network": network.to_config(), "mc_samples": mc_samples, **self.spec_config,
                             "regularize": [rule.to_config() for rule in rules], "compile": compile})
        self.mc_samples = mc_samples
        self.val_ppl, self.test_ppl, self.mc_ppl = Perplexity(), Perplexity(), Perplexity()
        self._state: dict[str, Any] = {}
        if hasattr(self, "setup_constraints"):
            self.setup_constraints()  # parametrizations now, so checkpoints load directly
        self.compile_options, self.channels_last = apply_switches({"network": self.network}, compile, False)

    def regularized_model(self) -> torch.nn.Module:
        return self.network

    def forward(self, tokens: torch.Tensor, state: Any = None) -> Any:
        return self.network(tokens, state)

    def check_data(self, datamodule: Any, world_size: int = 1, training: bool = True) -> None:
        """Refuse a data module whose vocabulary (``datamodule.vocab_size``) is not the network's
        (its ``vocab_size``, then a dry forward of a tiny token batch; regkit/tasks/data_checks.py).

        Raises:
            BadInput: keyed ``model.init_args.network.vocab_size`` (or ``.network``).
        """
        check_language_model_data(self, datamodule, world_size, training)

    def _step(self, key: str, tokens: torch.Tensor) -> Any:
        out = self.network(tokens, self._state.get(key))
        self._state[key] = detach_state(out.state)
        return out

    @staticmethod
    def _token_nll(log_probs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """(N, T) negative log-likelihood of each target token under (N, T, V) log-probabilities."""
        return -log_probs.gather(-1, targets.unsqueeze(-1)).squeeze(-1)

    @staticmethod
    def _loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), targets.reshape(-1))

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        # the TBPTT state carried into the next window: a mid-epoch resume continues it exactly
        checkpoint["tbptt_state"] = self._state.get("train")

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        if checkpoint.get("tbptt_state") is not None:
            self._state["train"] = checkpoint["tbptt_state"]

    def on_validation_epoch_start(self) -> None:
        self._state.pop("val", None)

    def _reset_states(self, prefix: str) -> None:
        for key in [k for k in self._state if k.startswith(prefix)]:
            del self._state[key]

    def on_test_epoch_start(self) -> None:
        self._reset_states("test")

    def on_predict_epoch_start(self) -> None:
        self._reset_states("predict")

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        if batch_idx == 0:  # a new epoch starts from a zero state (a mid-epoch resume keeps its own)
            self._state.pop("train", None)
        out = self._step("train", x)
        loss = self._loss(out.logits, y)
        if self.logging_due():
            # No prog_bar: Lightning would read it as a float every step (a GPU sync);
            # regkit's ProgressBar shows it at the logging interval.
            self.log("train/loss", loss, batch_size=y.numel())
            self.log("train/ppl", loss.detach().exp(), batch_size=y.numel())
        if len(self.penalties):
            loss = loss + self.penalty_loss(outputs=out.outputs, dropped_outputs=out.dropped_outputs, time_dim=1)
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        out = self._step("val", x)
        loss = self._loss(out.logits, y)
        self.val_ppl(out.logits.float(), y)
        self.log("val/loss", loss, sync_dist=True, batch_size=y.numel())
        self.log("val/ppl", self.val_ppl, prog_bar=True)
        return loss

    def _mc_log_probs(self, key: str, x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """Log of the mean of ``mc_samples`` stochastic passes' probabilities, each pass with its own state."""
        probs = torch.zeros_like(like, dtype=torch.float)
        with mc_dropout(self.network):
            for k in range(self.mc_samples):
                probs += self._step(f"{key}_mc{k}", x).logits.float().softmax(-1)
        return probs.div_(self.mc_samples).clamp_min_(1e-12).log_()

    def test_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        out = self._step("test", x)
        loss = self._loss(out.logits, y)
        self.test_ppl(out.logits.float(), y)
        self.log("test/loss", loss, sync_dist=True, batch_size=y.numel())
        self.log("test/ppl", self.test_ppl, prog_bar=True)
        if self.mc_samples:
            # Perplexity applies a softmax: log-probabilities come back out unchanged.
            self.mc_ppl(self._mc_log_probs("test", x, out.logits), y)
            self.log("test/mc_ppl", self.mc_ppl, prog_bar=True)
        return loss

    def predict_step(self, batch: Any, batch_idx: int) -> dict[str, torch.Tensor]:
        x, y = batch
        logits = self._step("predict", x).logits.float()
        result = {
            "targets": y.T,
            "nll": self._token_nll(logits.log_softmax(-1), y).T,
            "top1": logits.argmax(-1).T,
        }
        if self.mc_samples:
            result["mc_nll"] = self._token_nll(self._mc_log_probs("predict", x, logits), y).T
        return result
