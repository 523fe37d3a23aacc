"""Tests of funcnet.graph: traced computational graphs with forward and backward values."""

from __future__ import annotations

import re
import shutil
import xml.etree.ElementTree as ET

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from funcnet.graph import GraphvizNotFoundError, format_number, trace, value_lines
from funcnet.graph._jaxpr import jaxpr_program
from funcnet.layers import add, affine, mul, relu, sigmoid, softmax_with_loss

needs_dot = pytest.mark.skipif(
    shutil.which("dot") is None,
    reason="needs Graphviz's `dot` program: install Debian's `graphviz` package "
    "(apt-get install graphviz)",
)


@pytest.fixture
def x64():
    with jax.enable_x64(True):
        yield


def buy_apple(apple, apple_num, tax):
    return mul(mul(apple, apple_num), tax)


def buy_apple_orange(apple, apple_num, orange, orange_num, tax):
    return mul(add(mul(apple, apple_num), mul(orange, orange_num)), tax)


def sigmoid_by_hand(x):
    return 1 / (1 + jnp.exp(-1 * x))


def two_layer_loss(x, W1, b1, W2, b2, t):
    return softmax_with_loss(affine(relu(affine(x, W1, b1)), W2, b2), t)


def net_args(dtype=jnp.float64):
    kx, k1, kb, k2 = jax.random.split(jax.random.key(0), 4)
    x = jax.random.normal(kx, (3, 4), dtype)
    W1 = jax.random.normal(k1, (4, 5), dtype)
    b1 = jax.random.normal(kb, (5,), dtype)
    W2 = jax.random.normal(k2, (5, 2), dtype)
    return x, W1, b1, W2, jnp.zeros(2, dtype), jnp.array([0, 1, 1])


def _float_argnums(args):
    def floating(arg):
        return all(jnp.issubdtype(jnp.result_type(a), jnp.inexact) for a in jax.tree.leaves(arg))

    return tuple(i for i, a in enumerate(args) if floating(a))


# --------------------------------------------------------------------------------------
# The JAX-internals function


def test_jaxpr_program_reads_names_layers_literals_and_binds_each_step(x64):
    program = jaxpr_program(buy_apple, (100.0, 2.0, 1.1), expand=False)
    assert program.input_names == ("apple", "apple_num", "tax")
    assert [(s.name, s.kind, s.inputs) for s in program.steps] == [
        ("mul", "custom_vjp", (0, 1)),
        ("mul", "custom_vjp", (program.steps[0].outputs[0], 2)),
    ]
    slots = dict(enumerate([100.0, 2.0, 1.1]))
    for step in program.steps:
        slots.update(zip(step.outputs, step.apply(*(slots[i] for i in step.inputs)), strict=True))
    assert float(slots[program.outputs[0]]) == pytest.approx(220.0)

    expanded = jaxpr_program(buy_apple, (100.0, 2.0, 1.1), expand=True)
    assert [(s.name, s.kind, s.scope) for s in expanded.steps] == [
        ("mul", "primitive", ((1, "mul"),)),
        ("mul", "primitive", ((2, "mul"),)),
    ]

    literal = jaxpr_program(sigmoid_by_hand, (1.0,), expand=False)
    assert [s.name for s in literal.steps] == ["mul", "exp", "add", "div"]
    assert sorted(float(v) for _, v in literal.consts) == [-1.0, 1.0, 1.0]


def test_jaxpr_program_expands_only_the_named_calls():
    args = net_args(jnp.float32)
    steps = jaxpr_program(two_layer_loss, args, expand={"relu"}).steps
    names = [s.name for s in steps]
    assert names[0] == "affine" and names[-2:] == ["affine", "softmax_with_loss"]
    inside = steps[1:-2]  # relu's primitives (a comparison and a select), whatever they are
    assert "relu" not in names and inside
    assert all(s.scope == ((1, "relu"),) for s in inside)
    nested = jaxpr_program(lambda x: jax.jit(jnp.sin)(x) * 2, (1.0,), expand=False)
    assert [(s.name, s.kind) for s in nested.steps] == [("sin", "call"), ("mul", "primitive")]


# --------------------------------------------------------------------------------------
# The book's numbers


def test_apples_graph_carries_the_books_numbers(x64):
    # ch5, buying apples (Fig. 5-16): 100, 2 -> 200, 1.1 -> 220; backward 1, 1.1, 2.2, 110, 200.
    g = trace(buy_apple, 100.0, 2.0, 1.1)
    first, second = g.nodes
    assert (first.name, second.name) == ("mul", "mul")
    assert first.inputs == (g.input("apple").id, g.input("apple_num").id)
    middle = g.values[first.outputs[0]]
    assert middle.consumers == (second.id,)
    assert float(middle.forward) == 200.0 and float(middle.backward) == pytest.approx(1.1)
    assert float(g.output().forward) == pytest.approx(220.0)
    assert float(g.output().backward) == 1.0
    assert float(g.input("apple").backward) == pytest.approx(2.2)
    assert float(g.input("apple_num").backward) == pytest.approx(110.0)
    assert float(g.input("tax").backward) == pytest.approx(200.0)
    assert g.output().forward.dtype == jnp.float64


def test_apples_and_oranges_graph_carries_the_books_numbers(x64):
    # ch5, apples and oranges (Fig. 5-17): 715; dapple_num 110, dapple 2.2, dorange 3.3,
    # dorange_num 165, dtax 650; the sum 650 gets 1.1 back.
    g = trace(buy_apple_orange, 100.0, 2.0, 150.0, 3.0, 1.1)
    assert float(g.output().forward) == pytest.approx(715.0)
    expected = {"apple": 2.2, "apple_num": 110, "orange": 3.3, "orange_num": 165, "tax": 650}
    for name, value in expected.items():
        assert float(g.input(name).backward) == pytest.approx(value), name
    (total,) = [g.values[n.outputs[0]] for n in g.nodes if n.name == "add"]
    assert (float(total.forward), float(total.backward)) == pytest.approx((650.0, 1.1))
    # The book's printed float64 values survive in the exact table.
    assert "3.3000000000000003" in g.table(digits=None)
    assert "3.3000000000000003" not in g.table()


def test_sigmoid_graph_backward_at_the_input_is_y_times_one_minus_y(x64):
    # ch5, Fig. 5-20: the sigmoid as x(-1), exp, +1, / gives dx = y(1 - y).
    g = trace(sigmoid_by_hand, 0.7)
    assert [n.name for n in g.nodes] == ["mul", "exp", "add", "div"]
    y = float(g.output().forward)
    assert float(g.input("x").backward) == pytest.approx(y * (1 - y), rel=1e-12)
    assert [float(v.forward) for v in g.values if v.kind == "const"] == [-1.0, 1.0, 1.0]


# --------------------------------------------------------------------------------------
# Backward values are real gradients


# name: (function, a function making its arguments under float64)
CASES = {
    "apples": (buy_apple, lambda: (100.0, 2.0, 1.1)),
    "sigmoid-primitives": (sigmoid_by_hand, lambda: (np.float64(-0.3),)),
    "sigmoid-layer-vector": (lambda x: jnp.sum(sigmoid(x)), lambda: (np.linspace(-2, 2, 5),)),
    "value-used-twice": (lambda x: mul(x, x) + 3.0 * x, lambda: (np.float64(1.5),)),
    "two-layer-net": (two_layer_loss, net_args),
    "pytree-and-jit": (
        lambda p, x: jnp.sum(jax.jit(jnp.tanh)(x @ p["W"]) * jnp.clip(p["b"], -0.5, 0.5)),
        lambda: ({"W": np.full((3, 2), 0.3), "b": np.array([0.2, 0.9])}, np.ones((2, 3))),
    ),
}


@pytest.mark.parametrize("expand", [False, True], ids=["layers", "expanded"])
@pytest.mark.parametrize("case", list(CASES))
def test_input_edge_backward_equals_jax_grad(x64, case, expand):
    f, make_args = CASES[case]
    args = make_args()
    g = trace(f, *args, expand=expand)
    argnums = _float_argnums(args)
    grads = jax.grad(f, argnums=argnums)(*args)
    leaves = [leaf for i in argnums for leaf in jax.tree.leaves(grads[argnums.index(i)])]
    float_inputs = [g.values[i] for i in g.inputs if g.values[i].backward is not None]
    assert len(float_inputs) == len(leaves)
    for value, expected in zip(float_inputs, leaves, strict=True):
        np.testing.assert_allclose(value.backward, expected, rtol=1e-12, atol=1e-14)


def test_input_edge_backward_equals_jax_grad_in_float32():
    args = net_args(jnp.float32)
    g = trace(two_layer_loss, *args)
    grads = jax.grad(two_layer_loss, argnums=(0, 1, 2, 3, 4))(*args)
    for i, expected in enumerate(grads):
        assert g.values[g.inputs[i]].backward.dtype == jnp.float32
        np.testing.assert_allclose(g.values[g.inputs[i]].backward, expected, rtol=1e-5, atol=1e-6)
    assert g.input("t").backward is None  # integer labels have no derivative


def test_intermediate_edge_backward_is_the_gradient_of_the_rest_of_the_function(x64):
    x, W1, b1, W2, b2, t = net_args()
    g = trace(two_layer_loss, x, W1, b1, W2, b2, t)
    first_affine, relu_node, second_affine, _ = g.nodes
    hidden = g.values[first_affine.outputs[0]]  # the pre-activation a1 = x W1 + b1
    scores = g.values[second_affine.outputs[0]]
    np.testing.assert_allclose(hidden.forward, affine(x, W1, b1), rtol=1e-12)

    def rest_from_hidden(a):
        return softmax_with_loss(affine(relu(a), W2, b2), t)

    def rest_from_scores(s):
        return softmax_with_loss(s, t)

    np.testing.assert_allclose(hidden.backward, jax.grad(rest_from_hidden)(hidden.forward))
    np.testing.assert_allclose(scores.backward, jax.grad(rest_from_scores)(scores.forward))
    # The book's SoftmaxWithLoss backward: (y - t) / N on the score edge.
    y = jax.nn.softmax(scores.forward)
    np.testing.assert_allclose(scores.backward, (y - jax.nn.one_hot(t, 2)) / 3, rtol=1e-12)


def test_backward_starts_from_the_given_cotangent_for_non_scalar_outputs(x64):
    def f(x, y):
        return {"prod": mul(x, y), "sum": jnp.sum(x)}

    x, y = np.array([1.0, 2.0, 3.0]), np.array([4.0, 5.0, 6.0])
    cotangent = {"prod": np.array([1.0, -1.0, 0.5]), "sum": np.float64(2.0)}
    g = trace(f, x, y, cotangent=cotangent)
    _, vjp = jax.vjp(f, x, y)
    dx, dy = vjp(cotangent)
    np.testing.assert_allclose(g.input("x").backward, dx)
    np.testing.assert_allclose(g.input("y").backward, dy)
    assert len(g.outputs) == 2


# --------------------------------------------------------------------------------------
# Nodes: layers, their custom rules, and expansion


def test_a_layer_is_one_node_and_expand_shows_the_primitives_inside(x64):
    # float64: the same values as test_input_edge_backward_equals_jax_grad's two-layer
    # net (its compiled operations are reused)
    g = trace(two_layer_loss, *net_args())
    assert [(n.name, n.kind) for n in g.nodes] == [
        ("affine", "layer"),
        ("relu", "layer"),
        ("affine", "layer"),
        ("softmax_with_loss", "layer"),
    ]
    expanded = trace(two_layer_loss, *net_args(), expand=True)
    assert all(n.kind == "primitive" for n in expanded.nodes)
    inside_affine = [n.name for n in expanded.nodes if n.scope[0] == (1, "affine")]
    assert "dot_general" in inside_affine and "add" in inside_affine
    assert {n.scope[0][1] for n in expanded.nodes} == {"affine", "relu", "softmax_with_loss"}
    np.testing.assert_allclose(expanded.output().forward, g.output().forward, rtol=1e-6)


def test_other_calls_are_not_mistaken_for_funcnet_layers():
    g = trace(lambda x: jnp.sum(jax.nn.relu(x)), np.array([-1.0, 2.0], np.float32))
    assert [(n.name, n.kind) for n in g.nodes] == [("relu", "call"), ("reduce_sum", "primitive")]


def test_a_layer_node_backward_comes_from_its_own_custom_rule(x64):
    # A custom_vjp whose rule deliberately disagrees with autodiff of its forward.
    @jax.custom_vjp
    def tripled_gradient(x):
        return x * 1.0

    tripled_gradient.defvjp(lambda x: (x, None), lambda _, g: (3.0 * g,))
    g = trace(lambda x: tripled_gradient(x), 2.0)
    assert [(n.name, n.kind) for n in g.nodes] == [("tripled_gradient", "custom_vjp")]
    assert float(g.input("x").backward) == 3.0  # the rule's value, as jax.grad gives
    assert float(g.input("x").backward) == float(jax.grad(tripled_gradient)(2.0))
    inside = trace(lambda x: tripled_gradient(x), 2.0, expand=True)
    assert float(inside.input("x").backward) == 1.0  # the primitives' own derivative


# --------------------------------------------------------------------------------------
# Clear errors


def test_non_scalar_output_without_cotangent_is_a_clear_error():
    with pytest.raises(ValueError, match=r"not a scalar .*\(3,\).*cotangent="):
        trace(lambda x: x * 2.0, np.ones(3, np.float32))
    with pytest.raises(ValueError, match=r"output's shape; output \(3,\), cotangent \(2,\)"):
        trace(lambda x: x * 2.0, np.ones(3, np.float32), cotangent=np.ones(2))
    with pytest.raises(ValueError, match="floating-point output"):
        trace(lambda x: jnp.argmax(x), np.ones(3, np.float32))


def test_function_without_array_input_is_a_clear_error():
    with pytest.raises(ValueError, match="needs at least one array argument"):
        trace(lambda: jnp.float32(1.0))
    with pytest.raises(TypeError, match=r"argument name must be an array or a number, got str"):
        trace(lambda x, name: x, 1.0, "apple")


@pytest.mark.parametrize(
    "cotangent, match",
    [
        (np.ones(3) * 1j, "complex128"),  # a cast would silently drop the imaginary part
        (np.ones(3, np.complex64), "complex64"),
        (np.array(["a", "b", "c"]), "<U1"),
        (np.ones(3, bool), "bool"),
    ],
)
def test_cotangent_that_is_not_real_is_a_type_error_naming_it(cotangent, match):
    with pytest.raises(TypeError, match=rf"trace: cotangent must hold real numbers.*{match}"):
        trace(lambda x: x * 2.0, np.ones(3, np.float32), cotangent=cotangent)


def test_integer_and_nan_cotangents_are_used_as_given():
    g = trace(lambda x: x * 2.0, np.ones(3, np.float32), cotangent=np.arange(3))
    np.testing.assert_array_equal(g.input("x").backward, [0.0, 2.0, 4.0])
    g = trace(lambda x: x * 2.0, np.float32(1.0), cotangent=np.nan)
    assert np.isnan(g.input("x").backward)  # NaN propagates, never becomes a number


def test_f_and_expand_of_the_wrong_type_are_type_errors(x64):
    with pytest.raises(TypeError, match=r"trace: f must be a function to trace, got int 5"):
        trace(5, 1.0)
    with pytest.raises(TypeError, match=r"trace: expand must be True, False, a name.*got int 3"):
        trace(lambda x: x, 1.0, expand=3)
    nodes = trace(two_layer_loss, *net_args(), expand="relu").nodes
    assert nodes[1].scope == ((1, "relu"),)  # one name is a set of one


def _apples():
    return trace(buy_apple, 100.0, 2.0, 1.1)


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda g: g.output(5), IndexError, r"Graph.output: index 5 is out of range; .* 1 output"),
        (lambda g: g.output(-2), IndexError, r"Graph.output: index -2 is out of range"),
        (lambda g: g.output("price"), TypeError, r"Graph.output: index must be an int, got str"),
        (lambda g: g.output(True), TypeError, r"Graph.output: index must be an int, got bool"),
        (lambda g: g.input(0), TypeError, r"Graph.input: name must be a str .*got int 0"),
        (lambda g: g.input("pear"), KeyError, r"no input 'pear'; its inputs are apple, "),
        (lambda g: g.table(digits=-1), ValueError, r"Graph.table: digits must lie in \[1, 17\]"),
        (lambda g: g.table(digits=0), ValueError, r"Graph.table: digits .* got 0"),
        (lambda g: g.table(digits=40), ValueError, r"Graph.table: digits .* got 40"),
        (lambda g: g.table(digits=2.5), TypeError, r"Graph.table: digits must be an int.*2.5"),
        (lambda g: g.table(max_values=-1), ValueError, r"Graph.table: max_values must be >= 0"),
        (lambda g: g.table(max_values="6"), TypeError, r"Graph.table: max_values must be an int"),
        (lambda g: g.to_dot(digits=-1), ValueError, r"Graph.to_dot: digits must lie in"),
        (lambda g: g.to_dot(backward_color=3), TypeError, r"Graph.to_dot: backward_color must"),
        (lambda g: g.to_dot(backward_color='red"'), ValueError, r"backward_color .*'red\"'"),
        (lambda g: g.to_dot(rankdir="RL"), ValueError, r"Graph.to_dot: rankdir must be 'LR'"),
        (lambda g: g.to_dot(rankdir=None), TypeError, r"Graph.to_dot: rankdir must be 'LR'"),
        (lambda g: g.to_dot(wrap=0), ValueError, r"Graph.to_dot: wrap must be >= 1"),
        (lambda g: g.to_dot(wrap=1.0), TypeError, r"Graph.to_dot: wrap must be an int"),
        (lambda g: g.render("a.svg", colour="red"), TypeError, r"unknown option colour; the opt"),
        (lambda g: g.render(5), TypeError, r"Graph.render: path must be a str or a Path"),
    ],
)
def test_graph_members_reject_bad_arguments_naming_them(x64, call, error, match):
    with pytest.raises(error, match=match):
        call(_apples())


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda: format_number(1.0, -1), ValueError, r"format_number: digits must lie in"),
        (lambda: format_number(np.ones(3)), ValueError, r"single number, .*shape \(3,\)"),
        (lambda: format_number("220"), TypeError, r"format_number: x must be a number, got str"),
        (lambda: value_lines(np.ones(3), max_values=-1), ValueError, r"value_lines: max_values"),
        (lambda: value_lines(np.ones(3), wrap=-2), ValueError, r"value_lines: wrap must be >= 1"),
    ],
)
def test_text_helpers_reject_bad_arguments_naming_them(call, error, match):
    with pytest.raises(error, match=match):
        call()


# --------------------------------------------------------------------------------------
# Text


def test_numbers_read_like_the_book_and_arrays_by_shape():
    assert format_number(220.00000000000003) == "220"
    assert format_number(3.3000000000000003) == "3.3"
    assert format_number(3.3000000000000003, digits=None) == "3.3000000000000003"
    assert format_number(np.float32(0.1), digits=None) == "0.1"
    assert format_number(-0.0) == "0"
    assert format_number(np.int32(7)) == "7"
    assert value_lines(np.array([1.0, 2.5])) == ["(2,)", "[1, 2.5]"]
    assert value_lines(np.array([[1.0, 2.0], [3.0, 4.0]])) == ["(2, 2)", "[[1, 2],", " [3, 4]]"]
    assert value_lines(np.zeros((100, 784))) == ["(100, 784)"]
    assert format_number(220.00000000000003, 10) == "220"  # how the experiments print
    assert format_number(0.19661193324148185, 10) == "0.1966119332"


def test_value_lines_wrap_long_rows():
    assert value_lines(np.arange(5.0), wrap=2) == ["(5,)", "[0, 1,", " 2, 3,", " 4]"]
    assert value_lines(np.arange(6.0).reshape(2, 3), wrap=2) == [
        "(2, 3)",
        "[[0, 1,",
        "  2],",
        " [3, 4,",
        "  5]]",
    ]
    unwrapped = ["(3,)", "[0, 1, 2]"]
    assert value_lines(np.arange(3.0), wrap=3) == value_lines(np.arange(3.0)) == unwrapped


def test_table_has_one_row_per_node_with_inputs_forward_and_backward(x64):
    g = trace(buy_apple, 100.0, 2.0, 1.1)
    rows = str(g).splitlines()
    assert str(g) == g.table()
    assert rows[0] == "buy_apple: 3 inputs, 2 nodes"
    assert re.search(r"^\s+input\s+apple\s+100\s+2\.2$", rows[3])
    assert re.search(r"^#1\s+mul\s+apple, apple_num\s+200\s+1\.1$", rows[6])
    assert re.search(r"^#2 \(output\)\s+mul\s+#1, tax\s+220\s+1$", rows[7])
    assert len(rows) == 8


# --------------------------------------------------------------------------------------
# Drawing


def test_dot_source_puts_forward_above_backward_in_a_second_colour(x64):
    dot = trace(buy_apple, 100.0, 2.0, 1.1).to_dot(backward_color="red3")
    assert "rankdir=LR" in dot
    for forward, backward in [("100", "2.2"), ("2", "110"), ("1.1", "200"), ("200", "1.1")]:
        label = f'<TD>{forward}</TD></TR><HR/><TR><TD><FONT COLOR="red3">{backward}</FONT>'
        assert label in dot
    assert dot.count('label="×"') == 2
    assert 'label="apple_num"' in dot


def test_dot_source_top_to_bottom_enters_labels_at_the_top(x64):
    g = trace(buy_apple, 100.0, 2.0, 1.1)
    dot = g.to_dot(rankdir="TB")
    assert "rankdir=TB" in dot and "rankdir=LR" not in dot
    assert re.search(r"i\d+ -> v\d+:n \[arrowhead=none\]", dot)
    assert re.search(r"v\d+:s -> n\d+", dot) and ":w" not in dot and ":e " not in dot


@needs_dot
def test_render_writes_valid_svg_and_png_containing_the_numbers(x64, tmp_path):
    g = trace(buy_apple_orange, 100.0, 2.0, 150.0, 3.0, 1.1)
    svg_path = g.render(tmp_path / "apples_oranges.svg")
    root = ET.parse(svg_path).getroot()
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    texts = {t.text for t in root.iter("{http://www.w3.org/2000/svg}text")}
    assert {"715", "650", "2.2", "110", "3.3", "165", "1.1", "apple", "tax"} <= texts
    assert g.render(tmp_path / "g.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert ET.fromstring(g._repr_svg_()).tag.endswith("svg")


def test_render_without_dot_says_how_to_install_graphviz(x64, tmp_path, monkeypatch):
    g = trace(buy_apple, 100.0, 2.0, 1.1)
    monkeypatch.setenv("PATH", str(tmp_path))  # no `dot` anywhere on PATH
    with pytest.raises(GraphvizNotFoundError, match="apt-get install graphviz"):
        g.render(tmp_path / "apples.svg")
    assert g._repr_svg_() is None  # notebooks fall back to text
    with pytest.raises(ValueError, match=r"\.svg, \.png or \.pdf"):
        g.render(tmp_path / "apples.jpg")


def test_experiment_prints_the_tables_and_writes_every_picture(tmp_path, capsys):
    from experiments import ch05_computational_graph

    graphs = ch05_computational_graph.main(["--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert set(graphs) == {"apples", "apples_oranges", "sigmoid", "two_layer_net"}
    # ch5, buy_apple.py and buy_apple_orange.py: 220 and 715, not float64's 220.00000000000003
    assert "apples: price 220 | dapple, dapple_num, dtax = 2.2 110 200 |" in out
    assert "price 715 | dapple, dapple_num, dorange, dorange_num, dtax = 2.2 110 3.3 165 650" in out
    assert re.search(r"#2 \(output\)\s+mul\s+#1, tax\s+220\s+1\n", out)
    assert "00000000" not in out
    if shutil.which("dot") is not None:
        written = sorted(p.name for p in tmp_path.iterdir())
        pictures = [f"{n}{s}" for n in graphs for s in (".png", ".svg")]
        assert written == sorted([*pictures, "settings.json"])  # and the run's settings
        width, _ = _png_size(tmp_path / "two_layer_net.png")
        assert width <= 1200  # reads at page width (it was 3,051 px left to right)


def _png_size(path):
    header = path.read_bytes()[:24]
    return int.from_bytes(header[16:20], "big"), int.from_bytes(header[20:24], "big")


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--batch", "0"], "--batch: must be an integer from 1 to 100"),
        (["--batch", "-3"], "--batch: must be an integer from 1 to 100"),
        (["--batch", "101"], "every value of the graph is printed and drawn"),
        (["--seed", "-1"], "--seed: must be an integer from 0 to 2**32 - 1"),
        (["--seed", "4294967296"], "--seed: must be an integer from 0 to 2**32 - 1"),
        (["--seed", "x"], "--seed: expected an integer"),
    ],
)
def test_experiment_flags_are_validated(flags, message, capsys):
    from experiments import ch05_computational_graph

    with pytest.raises(SystemExit) as exit_info:
        ch05_computational_graph.main(flags)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
