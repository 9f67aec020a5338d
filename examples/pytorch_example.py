"""The classic PyTorch MNIST example net, as in report 001: two 5x5 convolutions with
Dropout2d, log_softmax + NLL loss, SGD with momentum 0.5 for 3 epochs (report: 96.71%).

    python examples/pytorch_example.py --device gpu
"""
import tinynet
import tinynet.nn.functional as F
from tinynet import nn, optim
from tinynet.experiment import command_line, load_mnist, make_parser, run, seed_everything


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 10, kernel_size=5)
        self.conv2 = nn.Conv2d(10, 20, kernel_size=5)
        self.conv2_drop = nn.Dropout2d()
        self.fc1 = nn.Linear(320, 50)
        self.fc2 = nn.Linear(50, 10)

    def forward(self, x):
        x = F.relu(F.max_pool2d(self.conv1(x), 2))                   # 10x12x12
        x = F.relu(F.max_pool2d(self.conv2_drop(self.conv2(x)), 2))  # 20x4x4
        x = x.view(-1, 320)
        x = F.relu(self.fc1(x))
        x = F.dropout(x, training=self.training)
        return F.log_softmax(self.fc2(x), dim=1)


def main():
    args = make_parser(__doc__, epochs=3, batch_size=64, lr=0.01, seed=1, out="runs/pytorch_example").parse_args()
    seed_everything(args.seed)
    train_loader, test_loader = load_mnist(args)
    model = Net().to(args.device)
    optimizer = optim.SGD(model.parameters(), lr=args.lr, momentum=0.5)
    run(model, optimizer, F.nll_loss, args, train_loader, test_loader, name="PyTorch example net")


if __name__ == "__main__":
    command_line(main)
