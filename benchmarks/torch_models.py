"""The report models in PyTorch: twins of the tinynet models in ``examples/``, layer for layer,
with the same ``state_dict`` keys, so that weights copy from one to the other.

    examples/mlp.py              mlp()              -> mlp()
    examples/cnn5.py             cnn5()             -> cnn5()
    examples/pytorch_example.py  Net                -> Net
    examples/lenet.py            lenet(activation)  -> lenet(activation)
    examples/vgg_bn.py           VGGBN              -> VGGBN
    examples/lenet_resnet.py     LeNetRes(variant)  -> LeNetRes(variant)  (torchvision's BasicBlock)
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def mlp(p=0.2):
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(28 * 28, 1024), nn.Dropout(p), nn.PReLU(),
        nn.Linear(1024, 2048), nn.Dropout(p), nn.ReLU(),
        nn.Linear(2048, 1024), nn.Dropout(p), nn.ReLU(),
        nn.Linear(1024, 512), nn.Dropout(p), nn.ReLU(),
        nn.Linear(512, 10),
    )


def _block(c_in, c_out, stride, activation, p=0.2):
    return [nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1), nn.BatchNorm2d(c_out), activation, nn.Dropout(p)]


def cnn5():
    return nn.Sequential(
        *_block(1, 64, 1, nn.PReLU()),
        *_block(64, 256, 2, nn.ReLU()),
        *_block(256, 512, 2, nn.ReLU()),
        *_block(512, 1024, 2, nn.ReLU()),
        *_block(1024, 256, 2, nn.ReLU()),
        nn.Flatten(),
        nn.Linear(256 * 2 * 2, 10),
    )


class Net(nn.Module):
    """The classic PyTorch MNIST example (report 001)."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 10, kernel_size=5)
        self.conv2 = nn.Conv2d(10, 20, kernel_size=5)
        self.conv2_drop = nn.Dropout2d()
        self.fc1 = nn.Linear(320, 50)
        self.fc2 = nn.Linear(50, 10)

    def forward(self, x):
        x = F.relu(F.max_pool2d(self.conv1(x), 2))
        x = F.relu(F.max_pool2d(self.conv2_drop(self.conv2(x)), 2))
        x = x.view(-1, 320)
        x = F.relu(self.fc1(x))
        x = F.dropout(x, training=self.training)
        return F.log_softmax(self.fc2(x), dim=1)


def lenet(activation="sigmoid"):
    act = nn.Sigmoid if activation == "sigmoid" else nn.ReLU
    model = nn.Sequential(
        nn.Conv2d(1, 6, kernel_size=5), act(), nn.MaxPool2d(2, 2),
        nn.Conv2d(6, 16, kernel_size=5), act(), nn.MaxPool2d(2, 2),
        nn.Flatten(),
        nn.Linear(16 * 4 * 4, 120), act(),
        nn.Linear(120, 84), act(),
        nn.Linear(84, 10),
    )
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.xavier_uniform_(m.weight)
            nn.init.zeros_(m.bias)
    return model


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
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 2)
        x = F.max_pool2d(F.relu(self.bn2(self.conv2(x))), 2)
        x = F.relu(self.bn3(self.conv3(x)))
        x = x.flatten(1)
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        return self.fc3(x)


class BasicBlock(nn.Module):
    """torchvision's ResNet BasicBlock (stride 1, identity shortcut when shapes allow)."""

    def __init__(self, in_channels, out_channels, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.downsample = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                                            nn.BatchNorm2d(out_channels))

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.relu(out + shortcut)


class LeNetRes(nn.Module):
    def __init__(self, variant="conv"):
        super().__init__()
        self.variant = variant
        self.conv1 = nn.Conv2d(1, 6, 5)
        self.pool = nn.MaxPool2d(2, 2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.res = BasicBlock(16 if variant == "conv" else 120, 16 if variant == "conv" else 120)
        self.fc1 = nn.Linear(16 * 4 * 4, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, 10)

    def forward(self, x):
        x = self.pool(F.relu(self.conv1(x)))
        x = self.pool(F.relu(self.conv2(x)))
        if self.variant == "conv":
            x = self.res(x)
        x = F.relu(self.fc1(x.flatten(1)))
        if self.variant == "fc":
            x = self.res(x.view(-1, 120, 1, 1)).flatten(1)
        x = F.relu(self.fc2(x))
        return self.fc3(x)


__all__ = ["mlp", "cnn5", "Net", "lenet", "VGGBN", "BasicBlock", "LeNetRes"]
