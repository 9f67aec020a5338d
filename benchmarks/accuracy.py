"""Train one report model to the end in tinynet and in PyTorch and compare test accuracy and
wall time.

    python benchmarks/accuracy.py --model lenet --device cpu            # the report's epochs
    python benchmarks/accuracy.py --model vgg_bn --device gpu --epochs 5

Both frameworks start from the same weights (PyTorch's initial ``state_dict`` copied into
tinynet), see the same batches in the same order (one shuffle per epoch, shared) and use the
report's optimiser, learning rate, batch size and schedule (see ``SPECS`` in ``models.py``).
Dropout runs as in training, with each framework's own random masks, so the two runs drift
apart and their accuracies differ by noise. The frameworks alternate step by step (the order
rotating), so load from other processes falls on both alike; each framework's wall time is
the sum of its own steps (batch gather included) and of its test evaluations.
"""
from __future__ import annotations

import argparse
import math
import sys
import time

import harness


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--model", default="lenet", help="one of the names in models.py (default lenet)")
    parser.add_argument("--device", choices=["cpu", "gpu"], default="cpu")
    parser.add_argument("--epochs", type=int, default=None, help="default: the report's")
    parser.add_argument("--subset", type=int, default=None, help="only the first N training and test images")
    parser.add_argument("--threads", type=int, default=0, help="threads for every pool (0: library defaults)")
    parser.add_argument("--data-dir", default=harness.default_data_dir())
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(harness.RESULTS_DIR))
    args = parser.parse_args(argv)
    harness.set_threads(args.threads)
    tinynet, torch = harness.import_frameworks()
    import numpy as np

    import models
    spec = models.parse_models(args.model)[0]
    epochs = args.epochs or spec.epochs
    if args.device == "gpu" and not tinynet.cuda.is_available():
        raise SystemExit("--device gpu: CuPy does not see a GPU (pip install -e .[cuda12])")
    train_x, train_y, note = harness.mnist_arrays(args.data_dir, spec.normalize, train=True)
    test_x, test_y, _ = harness.mnist_arrays(args.data_dir, spec.normalize, train=False)
    if args.subset:
        train_x, train_y, test_x, test_y = train_x[:args.subset], train_y[:args.subset], test_x[:args.subset], test_y[:args.subset]

    tdev, ddev = harness.tinynet_device(args.device), models.torch_device(args.device)
    tn_model, th_model = models.build_pair(spec, args.device, args.seed)
    trainers = {"tinynet": models.Trainer("tinynet", tn_model, spec), "torch": models.Trainer("torch", th_model, spec)}
    data = {"tinynet": (tinynet.tensor(train_x, device=tdev), tinynet.tensor(train_y, device=tdev),
                        tinynet.tensor(test_x, device=tdev), tinynet.tensor(test_y, device=tdev)),
            "torch": tuple(torch.from_numpy(a).to(ddev) for a in (train_x, train_y, test_x, test_y))}
    index = {"tinynet": lambda a: tinynet.tensor(a, device=tdev), "torch": lambda a: torch.from_numpy(a).to(ddev)}
    sync = harness.Synchronizer(args.device)
    train_seconds = {k: 0.0 for k in trainers}
    eval_seconds = {k: 0.0 for k in trainers}
    history = {k: [] for k in trainers}
    rng = np.random.default_rng(args.seed)
    steps_per_epoch = math.ceil(len(train_x) / spec.batch)
    print(f"{spec.name}: {epochs} epochs of {steps_per_epoch} steps (batch {spec.batch}), {note}", flush=True)

    def evaluate(name):
        trainer, (_, _, x, y) = trainers[name], data[name]
        lib = tinynet if name == "tinynet" else torch
        trainer.module.eval()
        correct = 0
        with lib.no_grad():
            for start in range(0, len(test_x), 1000):
                correct += int((trainer.model(x[start:start + 1000]).argmax(1) == y[start:start + 1000]).sum().item())
        trainer.module.train()
        return correct / len(test_x)

    for epoch in range(1, epochs + 1):
        order = rng.permutation(len(train_x))
        orders = {name: index[name](order) for name in trainers}
        losses = {name: [] for name in trainers}
        for step in range(steps_per_epoch):
            names = list(trainers)[step % 2:] + list(trainers)[:step % 2]
            for name in names:
                x_all, y_all = data[name][:2]

                def one_step():
                    idx = orders[name][step * spec.batch:(step + 1) * spec.batch]
                    return trainers[name].step(x_all[idx], y_all[idx])
                seconds, _ = harness.timed(one_step, sync, name)
                train_seconds[name] += seconds
        for name, trainer in trainers.items():
            losses[name] = float(np.mean(trainer.train_losses()[-steps_per_epoch:]))
            trainer.losses = []
            if trainer.scheduler is not None:
                trainer.scheduler.step()
            start = time.perf_counter()
            acc = evaluate(name)
            sync(name)
            eval_seconds[name] += time.perf_counter() - start
            history[name].append({"epoch": epoch, "train_loss": losses[name], "test_acc": acc,
                                  "train_s_total": train_seconds[name]})
        print(f"epoch {epoch}/{epochs}: " + "; ".join(
            f"{name} loss {history[name][-1]['train_loss']:.4f} acc {history[name][-1]['test_acc'] * 100:.2f}% "
            f"({train_seconds[name]:.0f} s)" for name in trainers), flush=True)

    rows = [{"type": "accuracy", "framework": name, "model": spec.name, "epochs": epochs, "batch": spec.batch,
             "final_test_acc": history[name][-1]["test_acc"], "best_test_acc": max(h["test_acc"] for h in history[name]),
             "train_s": train_seconds[name], "eval_s": eval_seconds[name], "s_per_epoch": train_seconds[name] / epochs,
             "history": history[name]} for name in trainers]
    env = harness.environment(args.device)
    stem = harness.results_stem(args.out, args.device, f"accuracy-{spec.name}"
                                 + (f"-threads{args.threads}" if args.threads else ""))
    table = harness.markdown_table(
        ["framework", "final test acc", "best test acc", "train s", "s/epoch", "eval s"],
        [[r["framework"], f"{r['final_test_acc'] * 100:.2f}%", f"{r['best_test_acc'] * 100:.2f}%",
          harness.fmt(r["train_s"], 1), harness.fmt(r["s_per_epoch"], 1), harness.fmt(r["eval_s"], 1)] for r in rows])
    notes = [f"- `{' '.join(['python', 'benchmarks/accuracy.py'] + sys.argv[1:])}`",
             f"- {spec.name} (report {spec.report}): {epochs} epochs, batch {spec.batch}, {spec.optimizer} "
             f"{spec.optim_kwargs}" + (f", StepLR{spec.step_lr}" if spec.step_lr else "") + f"; data: {note}"
             + (f", first {args.subset} images" if args.subset else ""),
             "- same initial weights and batch order; dropout masks differ (each framework's own generator); "
             "frameworks alternate step by step."]
    harness.write_markdown(stem.with_suffix(".md"), f"tinynet vs PyTorch: {spec.name} trained to the end, {args.device}",
                           env, ["## Test accuracy and wall time", "", *notes, "", table])
    harness.write_jsonl(stem.with_suffix(".jsonl"), env, rows)
    harness.bar_chart(stem.with_suffix(".png"), [f"epoch {h['epoch']}" for h in history["tinynet"]],
                      {name: [100 * h["test_acc"] for h in history[name]] for name in trainers},
                      "test accuracy %", f"{spec.name}: test accuracy per epoch, {args.device}")
    print(harness.markdown_table(["framework", "final test acc", "train s", "eval s"],
                                 [[r["framework"], f"{r['final_test_acc'] * 100:.2f}%", f"{r['train_s']:.1f}",
                                   f"{r['eval_s']:.1f}"] for r in rows]))
    print("wrote " + ", ".join(str(stem.with_suffix(s)) for s in (".jsonl", ".md", ".png")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
