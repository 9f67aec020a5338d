"""``tinynet.optim``: optimisers that update parameters from their gradients, and learning-rate
schedulers (``tinynet.optim.lr_scheduler``), with PyTorch's names, arguments and state dicts.

A training step::

    optimizer.zero_grad()              # forget the last step's gradients
    loss_fn(model(x), y).backward()    # fill p.grad for every parameter
    optimizer.step()                   # update every p in place from p.grad
    scheduler.step()                   # then, if any, move the learning rate along its schedule
"""
from .optimizer import Optimizer
from .sgd import SGD
from .adam import Adam, AdamW
from .adadelta import Adadelta
from .rmsprop import RMSprop
from .adagrad import Adagrad
from . import lr_scheduler

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "Adadelta", "RMSprop", "Adagrad", "lr_scheduler"]
