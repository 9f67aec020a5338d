"""The VGG-like CNN with BatchNorm of report 003: 3x3 convolutions with 32, 128 and 512
channels (padding 1), each with BatchNorm and ReLU, max-pooling after the first two, then
fully connected 25088->1024->256->10; Adam lr 1e-3, batch 64, 20 epochs, a checkpoint every
epoch (report: 99.35% at the best epoch).

    python examples/vgg_bn.py --device gpu
    python examples/vgg_bn.py --evaluate-all          # test every saved epoch, keep the best
    python examples/vgg_bn.py --predict 123           # predict test image 123 with best.npz
    python examples/vgg_bn.py --predict digit.png     # or a 28x28 image file
"""
import json
from pathlib import Path

import numpy as np

import tinynet
import tinynet.nn.functional as F
from tinynet import nn, optim
from tinynet.experiment import UsageError, command_line, load_mnist, make_parser, run, seed_everything
from tinynet.train import evaluate, load_checkpoint


class VGGBN(nn.Module):
    def __init__(self, hidden=(32, 128, 512, 1024, 256)):
        super().__init__()
        self.conv1 = nn.Conv2d(1, hidden[0], 3, padding=1)
        self.conv2 = nn.Conv2d(hidden[0], hidden[1], 3, padding=1)
        self.conv3 = nn.Conv2d(hidden[1], hidden[2], 3, padding=1)
        self.bn1, self.bn2, self.bn3 = nn.BatchNorm2d(hidden[0]), nn.BatchNorm2d(hidden[1]), nn.BatchNorm2d(hidden[2])
        self.fc1 = nn.Linear(hidden[2] * 7 * 7, hidden[3])
        self.fc2 = nn.Linear(hidden[3], hidden[4])
        self.fc3 = nn.Linear(hidden[4], 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 2)  # 32x14x14
        x = F.max_pool2d(F.relu(self.bn2(self.conv2(x))), 2)  # 128x7x7
        x = F.relu(self.bn3(self.conv3(x)))                   # 512x7x7
        x = x.flatten(1)
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        return self.fc3(x)


def evaluate_all(args, model, test_loader):
    """Test the checkpoint of every epoch and copy the best to best.npz."""
    checkpoints = sorted(Path(args.out, "checkpoints").glob("epoch_*.npz"), key=lambda p: int(p.stem[6:]))
    if not checkpoints:
        raise UsageError(f"no checkpoints under {args.out}/checkpoints: train first")
    scores = {}
    for path in checkpoints:
        load_checkpoint(path, model)
        scores[path.name] = evaluate(model, test_loader)["accuracy"]
        print(f"{path.name}: test accuracy {scores[path.name] * 100:.2f}%")
    best = max(scores, key=scores.get)
    tinynet.save(tinynet.load(Path(args.out, "checkpoints", best)), Path(args.out, "best.npz"))
    Path(args.out, "evaluate_all.json").write_text(json.dumps(scores, indent=1))
    print(f"best: {best} with {scores[best] * 100:.2f}%, copied to {args.out}/best.npz")


def predict(args, model, test_loader):
    """Predict one test image (by index) or an image file with the best (else last) checkpoint."""
    path = Path(args.out, "best.npz")
    load_checkpoint(path if path.exists() else Path(args.out, "checkpoints", "last.npz"), model)
    model.eval()
    if args.predict.isdigit():
        count = len(test_loader.dataset)
        if int(args.predict) >= count:
            raise UsageError(f"--predict {args.predict}: the test set has {count} images (0 to {count - 1})")
        image, label = test_loader.dataset[int(args.predict)]
        image = image.unsqueeze(0)
    else:
        import matplotlib.image
        pixels = matplotlib.image.imread(args.predict).astype(np.float32)
        pixels = pixels[..., :3].mean(-1) if pixels.ndim == 3 else pixels
        if pixels.max() > 1:
            pixels = pixels / 255.0
        image, label = tinynet.tensor(pixels.reshape(1, 1, 28, 28), device=args.device), None
    with tinynet.no_grad():
        probabilities = F.softmax(model(image), dim=1)[0].cpu().numpy()
    guess = int(probabilities.argmax())
    print(f"predicted {guess} with probability {probabilities[guess]:.4f}"
          + (f" (true label {int(label.item())})" if label is not None else ""))


def main():
    parser = make_parser(__doc__, epochs=20, batch_size=64, lr=1e-3, out="runs/vgg_bn")
    parser.add_argument("--evaluate-all", action="store_true", help="test every epoch's checkpoint")
    parser.add_argument("--predict", default=None, help="a test-set index or an image file")
    args = parser.parse_args()
    seed_everything(args.seed)
    train_loader, test_loader = load_mnist(args, normalize=None)  # ToTensor only, as the report
    model = VGGBN().to(args.device)
    if args.evaluate_all:
        return evaluate_all(args, model, test_loader)
    if args.predict is not None:
        return predict(args, model, test_loader)
    optimizer = optim.Adam(model.parameters(), lr=args.lr)
    run(model, optimizer, nn.CrossEntropyLoss(), args, train_loader, test_loader, name="VGG-like CNN with BatchNorm")


if __name__ == "__main__":
    command_line(main)
