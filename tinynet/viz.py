"""Draw the backward graph of a tensor as Graphviz DOT (and SVG/PNG when Graphviz is installed).

The picture is the graph that ``backward`` walks (see ``tinynet/autograd.py``): one box per
node (a ``Context``, labelled with its op, e.g. ``MulBackward``, and the shape of each output
it produced), one ellipse per leaf tensor that requires grad (labelled with its shape and,
given ``params=dict(model.named_parameters())``, its name), and an arrow from each input to
the node that consumed it, following ``ctx.edges``. Arrows point the way the forward pass ran;
gradients flow against them. The node that made the tensor is drawn filled.

    >>> loss = (x * w + b).sum()
    >>> draw_graph(loss, "graph.svg")   # writes graph.dot, and graph.svg if `dot` is installed
"""
from __future__ import annotations

import shutil
import subprocess
import warnings
from pathlib import Path

from .tensor import Tensor

__all__ = ["draw_graph", "to_dot"]

_RENDER_FORMATS = ("svg", "png", "pdf")


def _quote(text: str) -> str:
    """``text`` as a DOT string literal; its newlines become DOT line breaks."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _shape(shape) -> str:
    return str(tuple(int(s) for s in shape))


def to_dot(tensor: Tensor, show_shapes: bool = True, params: dict | None = None) -> str:
    """The backward graph of ``tensor`` as a DOT string (see the module docstring).

    Nodes and leaves are numbered in the order a breadth-first walk from ``tensor`` meets
    them, so the same graph always gives the same text. The walk is iterative (a list used as
    a queue, no recursion): a 100,000-op chain is fine.
    """
    if not isinstance(tensor, Tensor):
        raise TypeError(f"draw_graph: expected a Tensor, got {type(tensor).__name__}")
    names = {id(p): name for name, p in (params or {}).items()}
    nodes, leaves = [], []         # in the order the walk meets them
    ids: dict[int, str] = {}       # id(node or leaf) -> DOT id; nodes/leaves keep the objects alive
    edges = []                     # (from DOT id, to DOT id, output slot or None)

    def visit_leaf(leaf: Tensor) -> str:
        if id(leaf) not in ids:
            ids[id(leaf)] = f"leaf{len(leaves)}"
            leaves.append(leaf)
        return ids[id(leaf)]

    if tensor.grad_fn is None:     # a leaf, or a tensor without a graph: one ellipse
        visit_leaf(tensor)
    else:
        nodes.append(tensor.grad_fn)
        ids[id(tensor.grad_fn)] = "node0"
    i = 0
    while i < len(nodes):
        node = nodes[i]
        i += 1
        for edge in node.edges:    # per input: (producer node, output slot), a leaf, or None
            if edge is None:
                continue
            if type(edge) is tuple:
                producer, slot = edge
                if id(producer) not in ids:
                    ids[id(producer)] = f"node{len(nodes)}"
                    nodes.append(producer)
                edges.append((ids[id(producer)], ids[id(node)], slot if producer.n_outputs > 1 else None))
            else:
                edges.append((visit_leaf(edge), ids[id(node)], None))

    lines = ["digraph backward {", '  node [fontname="Helvetica", fontsize=11];']
    for node in nodes:
        label = node.name
        if show_shapes and node.output_meta:
            label += "\n" + ", ".join(_shape(shape) for shape, _ in node.output_meta)
        style = 'style=filled, fillcolor="#f6e3b4"' if node is tensor.grad_fn else "style=rounded"
        lines.append(f"  {ids[id(node)]} [label={_quote(label)}, shape=box, {style}];")
    for leaf in leaves:
        parts = [names[id(leaf)]] if id(leaf) in names else []
        if show_shapes or not parts:
            parts.append(_shape(leaf.shape))
        label = _quote("\n".join(parts))
        lines.append(f'  {ids[id(leaf)]} [label={label}, shape=ellipse, style=filled, fillcolor="#dbe9f6"];')
    for source, target, slot in edges:
        label = "" if slot is None else f" [label={_quote(str(slot))}]"  # which output, if several
        lines.append(f"  {source} -> {target}{label};")
    lines.append("}")
    return "\n".join(lines) + "\n"


def draw_graph(tensor: Tensor, path, show_shapes: bool = True, params: dict | None = None) -> Path:
    """Write the backward graph of ``tensor`` to ``path`` as DOT, and render it when possible.

    Args:
        tensor: usually a loss; its ``grad_fn`` is the root of the graph.
        path: ``*.dot`` writes DOT only; ``*.svg``, ``*.png`` or ``*.pdf`` writes the DOT
            next to it (same name, ``.dot`` suffix) and renders it with Graphviz's ``dot``
            program when that is installed. Without ``dot`` a warning says so; nothing fails.
        show_shapes: put output shapes on the nodes and shapes on the leaves.
        params: ``{name: tensor}``, e.g. ``dict(model.named_parameters())``, to name the leaves.

    Returns:
        The path of the DOT file.
    """
    path = Path(path)
    fmt = path.suffix.lower().lstrip(".")
    if fmt != "dot" and fmt not in _RENDER_FORMATS:
        raise ValueError(f"draw_graph: cannot tell the format from {str(path)!r}; use a .dot, "
                         + ", ".join(f".{f}" for f in _RENDER_FORMATS) + " path")
    dot_path = path if fmt == "dot" else path.with_suffix(".dot")
    dot_path.parent.mkdir(parents=True, exist_ok=True)
    dot_path.write_text(to_dot(tensor, show_shapes, params))
    if fmt == "dot":
        return dot_path
    program = shutil.which("dot")
    if program is None:
        warnings.warn(f"draw_graph: Graphviz's `dot` program is not installed, so {path} was not "
                      f"rendered; the graph is in {dot_path} (render it with `dot -T{fmt} {dot_path} "
                      f"-o {path}`, or paste it into any Graphviz viewer)", stacklevel=2)
        return dot_path
    done = subprocess.run([program, f"-T{fmt}", str(dot_path), "-o", str(path)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        warnings.warn(f"draw_graph: `dot` could not render {path}: {done.stderr.strip()}", stacklevel=2)
    return dot_path
