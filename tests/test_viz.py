"""tinynet.viz: the backward graph as DOT, with the right nodes and edges, for any depth, and
rendering that degrades to a warning without Graphviz."""
import re
import shutil
import subprocess
import warnings

import pytest

import tinynet
from tinynet import nn, viz


def parse_dot(text):
    """{id: label} for every node and the list of (source, target) edges of a DOT string."""
    labels = dict(re.findall(r'^\s*(\w+) \[label="((?:[^"\\]|\\.)*)"', text, re.M))
    edges = re.findall(r"^\s*(\w+) -> (\w+)", text, re.M)
    return labels, edges


def small_graph():
    x = tinynet.randn(2, 3, requires_grad=True)
    w = tinynet.randn(2, 3, requires_grad=True)
    b = tinynet.randn(3, requires_grad=True)
    return x, w, b, (x * w + b).sum()


def test_small_graph_has_its_nodes_leaves_and_edges():
    x, w, b, loss = small_graph()
    labels, edges = parse_dot(viz.to_dot(loss, params={"x": x, "w": w, "b": b}))
    by_label = {label: node for node, label in labels.items()}
    assert set(by_label) == {r"SumBackward\n()", r"AddBackward\n(2, 3)", r"MulBackward\n(2, 3)",
                             r"x\n(2, 3)", r"w\n(2, 3)", r"b\n(3,)"}
    s, a, m = (by_label[rf"{op}Backward\n{shape}"] for op, shape in
               [("Sum", "()"), ("Add", "(2, 3)"), ("Mul", "(2, 3)")])
    lx, lw, lb = (by_label[rf"{name}\n{shape}"] for name, shape in
                  [("x", "(2, 3)"), ("w", "(2, 3)"), ("b", "(3,)")])
    assert sorted(edges) == sorted([(a, s), (m, a), (lb, a), (lx, m), (lw, m)])


def test_leaves_without_names_show_shapes_and_graph_matches_edges():
    x, w, b, loss = small_graph()
    labels, edges = parse_dot(viz.to_dot(loss))
    assert sorted(label for node, label in labels.items() if node.startswith("leaf")) == \
        [r"(2, 3)", r"(2, 3)", r"(3,)"]
    # Every edge recorded by the engine appears once: 2 (Mul) + 2 (Add) + 1 (Sum).
    assert len(edges) == 5


def test_show_shapes_false_keeps_only_op_names_and_param_names():
    x, w, b, loss = small_graph()
    labels, _ = parse_dot(viz.to_dot(loss, show_shapes=False, params={"w": w}))
    assert sorted(labels.values()) == ["(2, 3)", "(3,)", "AddBackward", "MulBackward", "SumBackward", "w"]


def test_tensor_used_twice_gets_two_edges_and_inputs_without_grad_none():
    x = tinynet.randn(3, requires_grad=True)
    c = tinynet.randn(3)  # no grad: no leaf node for it
    labels, edges = parse_dot(viz.to_dot(x * x * c))
    assert sorted(labels.values()) == [r"(3,)", r"MulBackward\n(3,)", r"MulBackward\n(3,)"]
    assert edges.count(("leaf0", "node1")) == 2 and ("node1", "node0") in edges and len(edges) == 3


def test_multi_output_node_labels_the_edge_with_the_output_slot():
    x = tinynet.randn(4, 3, requires_grad=True)
    text = viz.to_dot(tinynet.split(x, 2)[1].sum())
    assert r'label="SplitBackward\n(2, 3), (2, 3)"' in text
    assert 'node1 -> node0 [label="1"];' in text


def test_model_parameters_are_named():
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    loss = model(tinynet.randn(5, 4)).sum()
    labels, edges = parse_dot(viz.to_dot(loss, params=dict(model.named_parameters())))
    leaves = sorted(label for node, label in labels.items() if node.startswith("leaf"))
    assert leaves == [r"0.bias\n(3,)", r"0.weight\n(3, 4)", r"2.bias\n(2,)", r"2.weight\n(2, 3)"]
    assert sum(1 for label in labels.values() if label.startswith("LinearBackward")) == 2


def test_a_leaf_is_one_node():
    x = tinynet.randn(2, requires_grad=True)
    labels, edges = parse_dot(viz.to_dot(x))
    assert list(labels.values()) == ["(2,)"] and edges == []


def test_deep_chain_is_walked_without_recursion():
    x = tinynet.randn(2, requires_grad=True)
    y = x
    depth = 5000  # far beyond Python's recursion limit of 1000
    for _ in range(depth):
        y = y * 1.0
    labels, edges = parse_dot(viz.to_dot(y))
    assert len(labels) == depth + 1 and len(edges) == depth


def test_draw_graph_dot_path_writes_dot_only(tmp_path):
    x, w, b, loss = small_graph()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing to render, so no warning
        path = viz.draw_graph(loss, tmp_path / "sub" / "g.dot")
    assert path == tmp_path / "sub" / "g.dot"
    assert path.read_text() == viz.to_dot(loss)
    assert sorted(p.name for p in (tmp_path / "sub").iterdir()) == ["g.dot"]


def test_draw_graph_without_dot_warns_and_still_writes_dot(tmp_path, monkeypatch):
    monkeypatch.setattr(viz.shutil, "which", lambda name: None)
    x, w, b, loss = small_graph()
    with pytest.warns(UserWarning, match="`dot` program is not installed"):
        path = viz.draw_graph(loss, tmp_path / "g.svg")
    assert path == tmp_path / "g.dot" and "MulBackward" in path.read_text()
    assert not (tmp_path / "g.svg").exists()


def test_draw_graph_renders_with_the_format_of_the_suffix(tmp_path, monkeypatch):
    calls = []

    def fake_run(args, **kwargs):
        calls.append(args)
        return subprocess.CompletedProcess(args, 0, "", "")

    monkeypatch.setattr(viz.shutil, "which", lambda name: "/usr/bin/dot")
    monkeypatch.setattr(viz.subprocess, "run", fake_run)
    x, w, b, loss = small_graph()
    path = viz.draw_graph(loss, tmp_path / "g.png")
    assert path == tmp_path / "g.dot"
    assert calls == [["/usr/bin/dot", "-Tpng", str(tmp_path / "g.dot"), "-o", str(tmp_path / "g.png")]]


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz's dot program is not installed")
def test_draw_graph_renders_svg_with_real_dot(tmp_path):
    x, w, b, loss = small_graph()
    viz.draw_graph(loss, tmp_path / "g.svg")
    assert "<svg" in (tmp_path / "g.svg").read_text()


def test_draw_graph_rejects_unknown_suffix(tmp_path):
    x, w, b, loss = small_graph()
    with pytest.raises(ValueError, match="use a .dot, .svg, .png, .pdf path"):
        viz.draw_graph(loss, tmp_path / "g.txt")


def test_non_tensor_is_a_type_error():
    with pytest.raises(TypeError, match="expected a Tensor"):
        viz.to_dot([1, 2])
