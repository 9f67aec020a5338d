"""The 5-block MLP of report 000: 784-1024-2048-1024-512-10, Dropout 0.2 after each hidden
Linear, PReLU in the first block and ReLU after; SGD (momentum 0.9, weight decay 1e-5) with
StepLR (step 10, gamma 0.1) over 30 epochs, batch 128, inputs normalised with (0.5, 0.5)
(report: 98.5%). The epoch count and StepLR settings are those of the report author's public
training script (github.com/kouyt5/postgraduate, cource-neural-network/minist/main.py), which the
report cites; the report itself does not give them.

    python examples/mlp.py --device gpu
    python examples/mlp.py --rotation 45     # RandomRotation(45), as the author's CNN run used
"""
from tinynet import nn, optim
from tinynet.experiment import command_line, load_mnist, make_parser, positive_int, rotation, run, seed_everything


def mlp(p=0.2):
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(28 * 28, 1024), nn.Dropout(p), nn.PReLU(),
        nn.Linear(1024, 2048), nn.Dropout(p), nn.ReLU(),
        nn.Linear(2048, 1024), nn.Dropout(p), nn.ReLU(),
        nn.Linear(1024, 512), nn.Dropout(p), nn.ReLU(),
        nn.Linear(512, 10),
    )


def main():
    parser = make_parser(__doc__, epochs=30, batch_size=128, lr=0.01, out="runs/mlp")
    parser.add_argument("--rotation", type=float, default=0, help="random rotation in degrees (0: off)")
    parser.add_argument("--step-size", type=positive_int, default=10, help="StepLR: epochs between lr decays")
    args = parser.parse_args()
    seed_everything(args.seed)
    train_loader, test_loader = load_mnist(args, normalize=(0.5, 0.5), train_transform=rotation(args.rotation))
    model = mlp().to(args.device)
    optimizer = optim.SGD(model.parameters(), lr=args.lr, momentum=0.9, weight_decay=1e-5)
    scheduler = optim.lr_scheduler.StepLR(optimizer, step_size=args.step_size, gamma=0.1)
    run(model, optimizer, nn.CrossEntropyLoss(), args, train_loader, test_loader, scheduler, name="MLP")


if __name__ == "__main__":
    command_line(main)
