"""LeNet on MNIST, as in report 002: sigmoid activations, Xavier initialisation, SGD with
batch 256 and learning rate 0.9 for 25 epochs (report: ~98.7% test accuracy).

    python examples/lenet.py --device gpu
    python examples/lenet.py --activation relu --lr 0.1
    python examples/lenet.py --sweep lr        # the report's learning-rate sweep
    python examples/lenet.py --sweep batch     # and its batch-size sweep
"""
import copy
from pathlib import Path

import tinynet
from tinynet import nn, optim
from tinynet.experiment import command_line, load_mnist, make_parser, run, seed_everything
from tinynet.plots import plot_sweep


def lenet(activation="sigmoid"):
    """Two 5x5 convolutions (6 and 16 channels) each followed by 2x2 max-pooling, then three
    fully connected layers 256 -> 120 -> 84 -> 10."""
    act = nn.Sigmoid if activation == "sigmoid" else nn.ReLU
    model = nn.Sequential(
        nn.Conv2d(1, 6, kernel_size=5), act(), nn.MaxPool2d(2, 2),    # 1x28x28 -> 6x12x12
        nn.Conv2d(6, 16, kernel_size=5), act(), nn.MaxPool2d(2, 2),   # -> 16x4x4
        nn.Flatten(),
        nn.Linear(16 * 4 * 4, 120), act(),
        nn.Linear(120, 84), act(),
        nn.Linear(84, 10),
    )
    for m in model.modules():  # Xavier weights and zero biases, as MXNet's init.Xavier() did
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.xavier_uniform_(m.weight)
            nn.init.zeros_(m.bias)
    return model


def train(args, train_loader, test_loader, name="LeNet"):
    seed_everything(args.seed)
    model = lenet(args.activation).to(args.device)
    optimizer = optim.SGD(model.parameters(), lr=args.lr)
    return run(model, optimizer, nn.CrossEntropyLoss(), args, train_loader, test_loader, name=name)


def main():
    parser = make_parser(__doc__, epochs=25, batch_size=256, lr=0.9, out="runs/lenet")
    parser.add_argument("--activation", choices=["sigmoid", "relu"], default="sigmoid",
                        help="after each convolution and hidden linear layer")
    parser.add_argument("--sweep", choices=["lr", "batch"], default=None,
                        help="train once per setting (lr 0.15-1.5 or batch 32-512) and plot accuracy")
    args = parser.parse_args()
    if args.sweep is None:
        train_loader, test_loader = load_mnist(args, normalize=None)  # pixels in [0, 1] as the report
        train(args, train_loader, test_loader)
        return

    # the report's grids: lr 0.15, 0.30, ..., 1.50 and batch 32 ... 512
    settings = [round(0.15 * k, 2) for k in range(1, 11)] if args.sweep == "lr" else [32, 64, 128, 256, 512]
    accuracies = []
    for value in settings:
        run_args = copy.copy(args)
        run_args.out = str(Path(args.out) / f"{args.sweep}_{value}")
        if args.sweep == "lr":
            run_args.lr = value
        else:
            run_args.batch_size = value
        train_loader, test_loader = load_mnist(run_args, normalize=None)
        history = train(run_args, train_loader, test_loader, name=f"LeNet {args.sweep}={value}")
        accuracies.append(history.test_acc[-1])
    path = plot_sweep(settings, accuracies, Path(args.out) / f"sweep_{args.sweep}.png",
                      xlabel="learning rate" if args.sweep == "lr" else "batch size",
                      log_x=args.sweep == "batch")
    for value, acc in zip(settings, accuracies):
        print(f"{args.sweep}={value}: test accuracy {acc * 100:.2f}%")
    print(f"sweep figure written to {path}")


if __name__ == "__main__":
    command_line(main)
