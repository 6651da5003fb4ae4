"""``python -m regkit.gan sample|export-classifier``: GAN command-line helpers.

  python -m regkit.gan sample --ckpt runs/regkit/<run>/checkpoints/last.ckpt --n 64 --out samples.png
  python -m regkit.gan export-classifier --ckpt runs/mnist_feature_classifier/<run id>/checkpoints/last.ckpt \\
      --out regkit/gan/assets/mnist_classifier.pt
"""
from __future__ import annotations

import argparse
import sys
from typing import Optional


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m regkit.gan", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("sample", help="write N generator samples from a checkpoint to a PNG grid")
    s.add_argument("--ckpt", required=True, help="checkpoint of a regkit.tasks.GAN run")
    s.add_argument("--out", default="samples.png", help="PNG file to write")
    s.add_argument("--n", type=int, default=64, help="number of samples")
    s.add_argument("--nrow", type=int, default=8, help="samples per row")
    s.add_argument("--seed", type=int, default=0, help="seed of the latent noise")
    s.add_argument("--scale", type=int, default=1, help="enlarge each pixel to scale x scale")
    s.add_argument("--device", default="cpu")
    e = sub.add_parser("export-classifier", help="turn a Classifier checkpoint into a metrics feature file")
    e.add_argument("--ckpt", required=True, help="checkpoint of a regkit.tasks.Classifier run")
    e.add_argument("--out", required=True, help="file to write (e.g. regkit/gan/assets/mnist_classifier.pt)")
    e.add_argument("--name", default="regkit MNIST classifier", help="name used in metric names")
    e.add_argument("--mean", type=float, default=None, help="input normalization mean (default: MNIST's)")
    e.add_argument("--std", type=float, default=None, help="input normalization std (default: MNIST's)")
    args = parser.parse_args(argv)
    if args.command == "sample":
        from regkit.gan.sampling import sample_to_png
        from regkit.tasks.gan import load_gan

        path = sample_to_png(load_gan(args.ckpt), args.out, n=args.n, nrow=args.nrow, seed=args.seed,
                             scale=args.scale, device=args.device)
        print(f"wrote {args.n} samples to {path}")
    else:
        from regkit.gan.metrics import export_classifier

        blob = export_classifier(args.ckpt, args.out, name=args.name, mean=args.mean, std=args.std)
        print(f"wrote {args.out}: {blob['network']['name']} features, {len(blob['state_dict'])} tensors")
    return 0


if __name__ == "__main__":
    sys.exit(main())
