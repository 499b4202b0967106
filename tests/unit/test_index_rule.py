"""Hand-worked cases of the venue's index rule (DESIGN 4.4): weights 0.4/0.3/0.2/0.1, outlier
beyond 5% of the median, stale after 10 s, at least 3 sources."""

import numpy as np
import pytest

from venue_risk.index_rule import OK, OUTLIER, STALE, compute_index, source_matrix

W = np.array([0.4, 0.3, 0.2, 0.1])


def run(prices, ages, prev=np.nan):
    return compute_index(np.array(prices, float), np.array(ages, float), W, 0.05, 10.0, 3, prev)


def test_all_ok_is_weighted_mean():
    idx, st = run([[100, 101, 99, 100]], [[1, 1, 1, 1]])
    assert idx[0] == pytest.approx(0.4 * 100 + 0.3 * 101 + 0.2 * 99 + 0.1 * 100)
    assert (st == OK).all()


def test_one_stale_source_dropped_and_weights_renormalized():
    idx, st = run([[100, 101, 99, 100]], [[1, 10.5, 1, 1]])
    assert idx[0] == pytest.approx((0.4 * 100 + 0.2 * 99 + 0.1 * 100) / 0.7)
    assert st[0].tolist() == [OK, STALE, OK, OK]


def test_age_exactly_stale_s_is_still_live():
    _, st = run([[100, 101, 99, 100]], [[10.0, 1, 1, 1]])
    assert st[0, 0] == OK


def test_one_outlier_dropped():
    # median of (100, 110, 99, 100) = 100; 110 is 10% off
    idx, st = run([[100, 110, 99, 100]], [[1, 1, 1, 1]])
    assert idx[0] == pytest.approx((0.4 * 100 + 0.2 * 99 + 0.1 * 100) / 0.7)
    assert st[0].tolist() == [OK, OUTLIER, OK, OK]


def test_two_outliers_fall_back_to_median():
    # median of (100, 110, 90, 101) = 100.5; 110 (+9.5%) and 90 (-10.4%) are outliers
    idx, st = run([[100, 110, 90, 101]], [[1, 1, 1, 1]])
    assert idx[0] == pytest.approx(100.5)
    assert st[0].tolist() == [OK, OUTLIER, OUTLIER, OK]


def test_stale_sources_do_not_count_for_the_median():
    # stale 150 ignored: median of (100, 99, 101) = 100, all within 5%
    idx, st = run([[100, 150, 99, 101]], [[1, 30, 1, 1]])
    assert idx[0] == pytest.approx((0.4 * 100 + 0.2 * 99 + 0.1 * 101) / 0.7)
    assert st[0].tolist() == [OK, STALE, OK, OK]


def test_too_few_sources_hold_previous_value():
    prices = [[100, 101, 99, 100], [120, 120, 120, 120], [200, 200, 200, 200]]
    ages = [[1, 1, 1, 1], [1, 11, 12, 1], [20, 20, 1, 1]]
    idx, st = run(prices, ages, prev=95.0)
    first = 0.4 * 100 + 0.3 * 101 + 0.2 * 99 + 0.1 * 100
    assert idx.tolist() == pytest.approx([first, first, first])
    assert st[1].tolist() == [OK, STALE, STALE, OK]


def test_hold_at_first_second_uses_prev_index():
    idx, _ = run([[100, 100, 100, 100]], [[50, 50, 50, 1]], prev=97.0)
    assert idx[0] == 97.0


def test_source_matrix_latest_received_and_age():
    grid = np.array([0.0, 1.0, 2.5, 5.0])
    price, age = source_matrix(grid, [np.array([0.5, 2.0]), np.array([3.0])],
                               [np.array([10.0, 11.0]), np.array([20.0])],
                               prev_received_s=np.array([-1.0, -4.0]), prev_prices=np.array([9.0, 19.0]))
    assert price[:, 0].tolist() == [9.0, 10.0, 11.0, 11.0]
    assert age[:, 0].tolist() == [1.0, 0.5, 0.5, 3.0]
    assert price[:, 1].tolist() == [19.0, 19.0, 19.0, 20.0]
    assert age[:, 1].tolist() == [4.0, 5.0, 6.5, 2.0]
