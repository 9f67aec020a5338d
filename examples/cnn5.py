"""The 5-block CNN of report 000: five 3x3 convolutions 1->64 (stride 1) ->256->512->1024->256
(stride 2, padding 1), each followed by BatchNorm, PReLU (first block) or ReLU, and Dropout 0.2,
then Linear 1024->10; SGD (momentum 0.9, weight decay 1e-5) with StepLR (step 5, gamma 0.1) over
15 epochs, batch 128, inputs normalised with (0.5, 0.5), training images randomly rotated by up to
45 degrees (report: 99.3%). The epochs, StepLR and rotation are those of the report author's
public training script for this CNN (github.com/kouyt5/postgraduate, 神经网络/minist/main.py);
the report itself does not give them.

    python examples/cnn5.py --device gpu
    python examples/cnn5.py --rotation 0      # without the augmentation
"""
from tinynet import nn, optim
from tinynet.experiment import command_line, load_mnist, make_parser, positive_int, rotation, run, seed_everything


def block(c_in, c_out, stride, activation, p=0.2):
    return [nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1), nn.BatchNorm2d(c_out), activation, nn.Dropout(p)]


def cnn5():
    return nn.Sequential(
        *block(1, 64, 1, nn.PReLU()),      # 64x28x28
        *block(64, 256, 2, nn.ReLU()),     # 256x14x14
        *block(256, 512, 2, nn.ReLU()),    # 512x7x7
        *block(512, 1024, 2, nn.ReLU()),   # 1024x4x4
        *block(1024, 256, 2, nn.ReLU()),   # 256x2x2
        nn.Flatten(),
        nn.Linear(256 * 2 * 2, 10),
    )


def main():
    parser = make_parser(__doc__, epochs=15, batch_size=128, lr=0.01, out="runs/cnn5")
    parser.add_argument("--rotation", type=float, default=45, help="random rotation in degrees (0: off)")
    parser.add_argument("--step-size", type=positive_int, default=5, help="StepLR: epochs between lr decays")
    args = parser.parse_args()
    seed_everything(args.seed)
    train_loader, test_loader = load_mnist(args, normalize=(0.5, 0.5), train_transform=rotation(args.rotation))
    model = cnn5().to(args.device)
    optimizer = optim.SGD(model.parameters(), lr=args.lr, momentum=0.9, weight_decay=1e-5)
    scheduler = optim.lr_scheduler.StepLR(optimizer, step_size=args.step_size, gamma=0.1)
    run(model, optimizer, nn.CrossEntropyLoss(), args, train_loader, test_loader, scheduler, name="CNN5")


if __name__ == "__main__":
    command_line(main)
