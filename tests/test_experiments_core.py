"""The book's printed numbers from the chapter-2 and chapter-5 example programs."""

import pytest

from experiments import ch02_perceptron, ch05_buy_apple_orange


def test_ch02_prints_the_four_truth_tables(capsys):
    tables = ch02_perceptron.main([])
    assert tables == {
        "AND": [0, 0, 0, 1],
        "NAND": [1, 1, 1, 0],
        "OR": [0, 1, 1, 1],
        "XOR": [0, 1, 1, 0],
    }
    out = capsys.readouterr().out
    assert all(name in out for name in tables)


def test_ch05_buy_apple_orange_gives_the_books_numbers(capsys):
    numbers = ch05_buy_apple_orange.main([])
    # ch5.4.1, buy_apple.py
    apples = numbers["apples"]
    assert apples["price"] == pytest.approx(220.0, rel=1e-15)
    assert apples["dApple"] == 2.2
    assert apples["dApple_num"] == pytest.approx(110.0, rel=1e-15)
    assert apples["dTax"] == 200.0
    # ch5.4.2, buy_apple_orange.py
    both = numbers["apples_oranges"]
    assert both["price"] == pytest.approx(715.0, rel=1e-15)
    assert both["dApple"] == 2.2
    assert both["dApple_num"] == pytest.approx(110.0, rel=1e-15)
    assert both["dOrange"] == 3.3000000000000003
    assert both["dOrange_num"] == pytest.approx(165.0, rel=1e-15)
    assert both["dTax"] == 650.0
    out = capsys.readouterr().out
    # Printed at 10 significant digits, like ch05_computational_graph's tables: float64's
    # 220.00000000000003 and 3.3000000000000003 read as 220 and 3.3.
    for line in [
        "price: 220",
        "dApple: 2.2",
        "dApple_num: 110",
        "dTax: 200",
        "price: 715",
        "dOrange: 3.3",
        "dOrange_num: 165",
        "dTax: 650",
    ]:
        assert line + "\n" in out
    assert "0000000" not in out
