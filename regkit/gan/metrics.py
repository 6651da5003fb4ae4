"""GAN metrics that work offline: FID and an Inception-Score-style classifier score computed with a
small MNIST classifier trained by regkit, instead of Inception-v3 (whose weights need a download
and which was never trained on 28x28 digits).

The classifier is ``recipes/mnist_feature_classifier.yaml`` (``small_cnn``); its weights ship in
``regkit/gan/assets/mnist_classifier.pt``. Features are the penultimate layer (64 values, after the
hidden layer's activation), the score uses its softmax. Numbers are comparable with each other,
not with Inception-based FID/IS from papers.
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Optional

import torch
from torch import nn
from torchmetrics.image.fid import FrechetInceptionDistance
from torchmetrics.image.inception import InceptionScore

from regkit.registry import NetworkSpec

DEFAULT_CLASSIFIER = Path(__file__).resolve().parent / "assets" / "mnist_classifier.pt"


class FeatureClassifier(nn.Module):
    """A frozen regkit classifier network used as a metric's feature extractor; always in eval mode,
    always in float32 (also under autocast).

    Args:
        path: file written by ``python -m regkit.gan export-classifier`` (null: the packaged MNIST one).

    Shape:
        Input (N, C, H, W) images in [-1, 1] (the generator's range). ``features`` gives
        (N, num_features), ``forward`` gives (N, num_classes) logits.
    """

    def __init__(self, path: Optional[str] = None) -> None:
        super().__init__()
        file = Path(path) if path else DEFAULT_CLASSIFIER
        if not file.is_file():
            raise FileNotFoundError(
                f"feature classifier {str(file)!r} not found; train one with "
                "`regkit fit --config recipes/mnist_feature_classifier.yaml` and export it with "
                "`python -m regkit.gan export-classifier --ckpt <last.ckpt> --out <file>`"
            )
        blob = torch.load(file, map_location="cpu", weights_only=True)
        self.name = str(blob["name"])
        self.mean, self.std = float(blob["mean"]), float(blob["std"])
        network = NetworkSpec.parse(blob["network"]).build()
        network.load_state_dict(blob["state_dict"])
        layers = network.layers
        if not isinstance(layers, nn.Sequential) or not isinstance(layers[-1], nn.Linear):
            raise TypeError("a feature classifier needs a `.layers` Sequential ending in a Linear layer")
        self.body, self.head = layers[:-1], layers[-1]
        self.num_features = self.head.in_features
        self.requires_grad_(False)

    def _prepare(self, x: torch.Tensor) -> torch.Tensor:
        x = (x.float() + 1) / 2  # [-1, 1] -> [0, 1] pixels
        return (x - self.mean) / self.std  # the normalization it was trained with

    def features(self, x: torch.Tensor) -> torch.Tensor:
        # Dropout and batch norm inside the classifier must never act as in training. Its mode flag
        # follows the task's (a module left in eval mode makes Lightning warn at the start of
        # training), so the body switches to eval mode for each call.
        was_training = self.body.training
        self.body.eval()
        try:
            with torch.autocast(device_type=x.device.type, enabled=False):
                return self.body(self._prepare(x))
        finally:
            self.body.train(was_training)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.features(x)
        with torch.autocast(device_type=x.device.type, enabled=False):
            return self.head(features)


class _Features(nn.Module):
    """Penultimate-layer view of a shared classifier (what torchmetrics' FID calls ``inception``)."""

    def __init__(self, classifier: FeatureClassifier) -> None:
        super().__init__()
        self.classifier = classifier
        self.num_features = classifier.num_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier.features(x)


def classifier_fid(classifier: FeatureClassifier) -> FrechetInceptionDistance:
    """torchmetrics FID on the classifier's penultimate features (Heusel et al., 2017); the matrix
    square root is torchmetrics' own (eigenvalues of the covariance product), no scipy needed."""
    return FrechetInceptionDistance(feature=_Features(classifier), reset_real_features=True)


def classifier_score(classifier: FeatureClassifier, splits: int = 10) -> InceptionScore:
    """exp(E_x KL(p(y|x) || p(y))) with the classifier's softmax: the Inception Score of Salimans et al.
    (2016) with a digit classifier; 1 (useless) to 10 (confident, all ten classes equally often)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "will save all extracted features in buffer": intended
        return InceptionScore(feature=classifier, splits=splits)


def export_classifier(ckpt: str, out: str, name: str = "regkit MNIST classifier",
                      mean: Optional[float] = None, std: Optional[float] = None) -> dict[str, Any]:
    """Write a ``regkit.tasks.Classifier`` checkpoint's network (weights, recipe config, input
    normalization) as a small file that :class:`FeatureClassifier` loads with ``weights_only``."""
    from regkit.data.mnist import MNISTDataModule

    checkpoint = torch.load(ckpt, map_location="cpu", weights_only=True)
    hparams = checkpoint["hyper_parameters"]
    state = {k[len("network."):]: v.clone() for k, v in checkpoint["state_dict"].items() if k.startswith("network.")}
    data = checkpoint.get("datamodule_hyper_parameters", {})
    if data.get("normalize", True) is False:  # trained on [0, 1] pixels
        mean, std = 0.0, 1.0
    mean = MNISTDataModule.mean if mean is None else mean
    std = MNISTDataModule.std if std is None else std
    blob = {"name": name, "network": hparams["network"], "state_dict": state, "mean": mean, "std": std}
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    torch.save(blob, out)
    return blob
