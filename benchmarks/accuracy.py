"""Train the zoo's networks on real data to their target accuracies, glasscnn beside PyTorch.

Run by hand (not a test), from the repository root:

    .venv/bin/python benchmarks/accuracy.py            # full run (about an hour on 2 cores)
    .venv/bin/python benchmarks/accuracy.py --quick    # 1 epoch on subsets (a few minutes)
    .venv/bin/python benchmarks/accuracy.py --only lenet_bn,ablation --no-torch

Each case trains one recipe in glasscnn and the same recipe in PyTorch: the twin network
starts from the same initial weights and reads the very same batches (same loader, same
shuffling and augmentation); optimizer, schedule and L2 term are the torch.optim
equivalents. Both train on the full training split (no validation hold-out; the recipe is
fixed, nothing is selected on test data) and are scored on the test split. The table gives
both accuracies, their difference and the training wall-clock times. The course's LeNet-BN
ablation compares lenet_bn with per-channel normalisation + batch norm + dropout
against /255 rescaling with neither. Results go to OUT/accuracy.json and OUT/*_curves.png.
Exit status 1 if a target (or the 0.5-point agreement with PyTorch) is missed in a full run.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")  # idle BLAS threads must not spin
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # while torch's threads work, and back

import argparse
import dataclasses
import json
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from torch_twin import torch_schedule, weights

from glasscnn.io import to_torch
from glasscnn.train import Recipe, Setup, Trainer, prepare
from glasscnn.train.progress import progress_factory
from glasscnn.train.recipes import make_optimizer
from glasscnn.train.run import epoch_line

AGREEMENT = 0.5  # points of accuracy between glasscnn and PyTorch


@dataclass
class Case:
    """One benchmark line: a recipe, its target test accuracy (%) and a label."""

    name: str
    recipe: Recipe
    target: float | None
    label: str


CASES = [
    Case("lenet_bn", Recipe("lenet_bn", "fashion-mnist", epochs=20, batch_size=128, lr=1e-3,
                            schedule="cosine", val_size=0), 90.0,
         "lenet_bn, Fashion-MNIST"),
    Case("vgg_cifar", Recipe("vgg_cifar", "fashion-mnist", epochs=15, batch_size=128, lr=2e-3,
                             schedule="cosine", val_size=0), 92.0,
         "vgg_cifar (1-channel input), Fashion-MNIST"),
    Case("mnist_net", Recipe("mnist_net", "mnist", epochs=10, batch_size=128, lr=1e-3,
                             schedule="cosine", normalize="symmetric", val_size=0), 98.5,
         "mnist_net, MNIST"),
]
ABLATION = [
    Case("lenet_bn", CASES[0].recipe, None, "per-channel norm + BN + dropout"),
    Case("lenet_plain", dataclasses.replace(CASES[0].recipe, normalize="rescale",
                                            model_kwargs={"batchnorm": False, "dropout": 0.0}),
         None, "/255, no BN, no dropout"),
]


def quick(recipe: Recipe) -> Recipe:
    """The ``--quick`` version of a recipe: one epoch on 6,000 training and 2,000 test images."""
    return dataclasses.replace(recipe, epochs=1, train_limit=6000, test_limit=2000)


def train_glasscnn(setup: Setup, progress: bool) -> dict[str, Any]:
    """Train ``setup`` with the Trainer; return test accuracy, training seconds and history."""
    r = setup.recipe
    trainer = Trainer(setup.model, setup.optimizer, train_loader=setup.train_loader,
                      schedule=setup.schedule, schedule_interval=setup.schedule_interval,
                      l2=r.l2, clip_norm=r.clip_norm, progress=progress_factory(progress),
                      on_epoch=lambda t, record: print(epoch_line(record, r.epochs), flush=True))
    trainer.fit(r.epochs)
    test = trainer.evaluate(setup.test_loader)
    return {"accuracy": 100 * test["accuracy"], "loss": test["loss"],
            "seconds": float(np.sum(trainer.history["epoch_seconds"])),
            "history": trainer.history}


def train_torch(setup: Setup, model: Any, torch: Any) -> dict[str, Any]:
    """Train the PyTorch twin ``model`` on the same batches with the same recipe."""
    r = setup.recipe
    torch.manual_seed(r.seed)
    loader = setup.train_loader
    optimizer = make_optimizer(r, list(model.parameters()), torch.optim)
    schedule, interval = torch_schedule(r, optimizer, len(loader), torch)
    penalised = weights(model)
    loss_fn = torch.nn.functional.cross_entropy
    seconds = 0.0
    for epoch in range(r.epochs):
        loader.set_epoch(epoch)
        model.train()
        start = time.perf_counter()
        for x, y in loader:
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model(torch.from_numpy(x)), torch.from_numpy(y))
            if r.l2:
                loss = loss + 0.5 * r.l2 * sum((w * w).sum() for w in penalised)
            loss.backward()
            if r.clip_norm is not None:
                torch.nn.utils.clip_grad_norm_(model.parameters(), r.clip_norm)
            optimizer.step()
            if schedule is not None and interval == "step":
                schedule.step()
        if schedule is not None and interval == "epoch":
            schedule.step()
        seconds += time.perf_counter() - start
    model.eval()
    correct = count = 0
    with torch.no_grad():
        for x, y in setup.test_loader:
            correct += int((model(torch.from_numpy(x)).argmax(1).numpy() == y).sum())
            count += len(y)
    return {"accuracy": 100 * correct / count, "seconds": seconds}


def run_case(case: Case, torch: Any, progress: bool, out: Path) -> dict[str, Any]:
    """Prepare, train in glasscnn (and PyTorch), draw the curves; return the result line."""
    setup = prepare(case.recipe)
    print(f"\n== {case.label}: {case.recipe.epochs} epochs, {len(setup.train):,} train / "
          f"{len(setup.test):,} test images", flush=True)
    twin_model = None if torch is None else to_torch(setup.model, torch)
    ours = train_glasscnn(setup, progress)
    print(f"glasscnn: {ours['accuracy']:.2f}% in {ours['seconds']:.0f} s", flush=True)
    result = {"case": case.name, "label": case.label, "recipe": case.recipe.to_dict(),
              "target": case.target, "glasscnn": {k: v for k, v in ours.items()
                                                   if k != "history"}}
    if twin_model is not None:
        theirs = train_torch(setup, twin_model, torch)
        print(f"pytorch:  {theirs['accuracy']:.2f}% in {theirs['seconds']:.0f} s", flush=True)
        result["pytorch"] = theirs
    try:
        from glasscnn.train.plots import plot_curves
    except ImportError:
        return result
    plot_curves(ours["history"], out / f"{case.name}_curves.png",
                f"{case.label} (glasscnn)", ours["accuracy"] / 100)
    return result


def verdict(result: dict[str, Any], checked: bool) -> str:
    """``ok`` / ``MISSED`` against the target and PyTorch, or ``-`` when not checked."""
    if not checked or result["target"] is None:
        return "-"
    ok = result["glasscnn"]["accuracy"] >= result["target"]
    if "pytorch" in result:
        ok &= abs(result["glasscnn"]["accuracy"] - result["pytorch"]["accuracy"]) <= AGREEMENT
    return "ok" if ok else "MISSED"


def table(results: list[dict[str, Any]], checked: bool) -> str:
    """The side-by-side table of accuracies and times."""
    head = (f"{'case':<44} {'epochs':>6} {'glasscnn':>9} {'time':>7} {'pytorch':>9} "
            f"{'time':>7} {'diff':>6} {'target':>7}  result")
    lines = [head, "-" * len(head)]
    for r in results:
        g, t = r["glasscnn"], r.get("pytorch")
        torch_cols = (f"{t['accuracy']:>8.2f}% {t['seconds']:>6.0f}s "
                      f"{g['accuracy'] - t['accuracy']:>+6.2f}" if t else
                      f"{'-':>9} {'-':>7} {'-':>6}")
        target = f">={r['target']:.1f}" if r["target"] is not None else "-"
        lines.append(f"{r['label']:<44} {r['recipe']['epochs']:>6} {g['accuracy']:>8.2f}% "
                     f"{g['seconds']:>6.0f}s {torch_cols} {target:>7}  {verdict(r, checked)}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the selected cases; print the table; 1 if a checked target is missed."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="1 epoch on 6,000 train / 2,000 test images; targets not checked")
    parser.add_argument("--only", default="lenet_bn,vgg_cifar,mnist_net,ablation",
                        help="comma-separated cases (default: all)")
    parser.add_argument("--epochs", type=int, help="override every recipe's epochs")
    parser.add_argument("--no-torch", action="store_true", help="glasscnn only")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("--out", default="runs/benchmark", help="folder for JSON and curves")
    args = parser.parse_args(argv)
    torch = None
    if not args.no_torch:
        import torch

        torch.set_num_threads(args.threads)
    wanted = set(args.only.split(","))
    unknown = wanted - {c.name for c in CASES} - {"ablation"}
    if unknown:
        parser.error(f"unknown cases {sorted(unknown)}")

    def adjust(recipe: Recipe) -> Recipe:
        recipe = quick(recipe) if args.quick else recipe
        return dataclasses.replace(recipe, epochs=args.epochs) if args.epochs else recipe

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    print(f"python {platform.python_version()}, numpy {np.__version__}"
          + ("" if torch is None else f", torch {torch.__version__} ({args.threads} threads)")
          + f", {os.cpu_count()} CPUs" + (", QUICK" if args.quick else ""))
    results = []
    done: dict[str, dict[str, Any]] = {}
    for case in CASES:
        if case.name in wanted:
            c = dataclasses.replace(case, recipe=adjust(case.recipe))
            done[c.name] = run_case(c, torch, not args.no_progress, out)
            results.append(done[c.name])
    ablation = []
    if "ablation" in wanted:
        for case in ABLATION:
            c = dataclasses.replace(case, recipe=adjust(case.recipe), target=None)
            reuse = done.get(c.name)
            if reuse is None or reuse["recipe"] != c.recipe.to_dict():
                reuse = run_case(c, None, not args.no_progress, out)
            ablation.append({k: v for k, v in reuse.items() if k != "pytorch"}
                            | {"label": c.label, "target": None})
    checked = not args.quick and not args.epochs
    print("\n" + table(results, checked) if results else "")
    if ablation:
        print("\nthe course's LeNet-BN ablation, lenet_bn on fashion-mnist, glasscnn:")
        print(table(ablation, False))
    (out / "accuracy.json").write_text(json.dumps({"results": results, "ablation": ablation,
                                                   "quick": args.quick}, indent=1))
    print(f"\nwrote {out / 'accuracy.json'}")
    return 1 if any(verdict(r, checked) == "MISSED" for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
