"""The table and figure helpers: exact Markdown, pooled rank frequencies against a hand count,
figures with the expected artists, bad input refused."""
import subprocess
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from assimilax import plotting  # noqa: E402


def test_markdown_table_from_mappings_is_exact():
    rows = [dict(method="EnKF", rmse=0.123456, n=10), dict(method="PF", rmse=float("nan"), n=800, note="a|b"),
            dict(method="SF", rmse=3.0e7, n=None)]
    assert plotting.markdown_table(rows) == (
        "| method | rmse | n | note |\n"
        "| --- | --- | --- | --- |\n"
        "| EnKF | 0.123 | 10 | — |\n"
        "| PF | — | 800 | a\\|b |\n"
        "| SF | 30000000.000 | — | — |")
    assert plotting.markdown_table(rows, ["n", "rmse"], digits=1, diverged_above=1e6, missing="n/a") == (
        "| n | rmse |\n| --- | --- |\n| 10 | 0.1 |\n| 800 | n/a |\n| n/a | diverged |")
    inf = plotting.markdown_table([dict(x=float("inf")), dict(x=-2e6), dict(x=np.float32(0.5))], diverged_above=1e6)
    assert inf == "| x |\n| --- |\n| diverged |\n| diverged |\n| 0.500 |"


def test_markdown_table_from_sequences_with_formats():
    rows = [("KF", -1234.56789012345, 1.7e-13), ("dynamax", -1234.5678901, 2.0e-9)]
    got = plotting.markdown_table(rows, ["peer", "log-lik", "rel"], formats={"log-lik": ".10g", "rel": ".1e"})
    assert got == ("| peer | log-lik | rel |\n| --- | --- | --- |\n"
                   "| KF | -1234.56789 | 1.7e-13 |\n| dynamax | -1234.56789 | 2.0e-09 |")
    assert plotting.markdown_table([(1, 2.5)], ["a", "b"], formats=lambda v: f"<{v}>") == \
        "| a | b |\n| --- | --- |\n| <1> | <2.5> |"
    assert plotting.markdown_table([], ["a"]) == "| a |\n| --- |"


def test_markdown_table_refuses_bad_input():
    with pytest.raises(ValueError, match="need `columns`"):
        plotting.markdown_table([(1, 2)])
    with pytest.raises(ValueError, match="row 1 has 1 cells, expected 2"):
        plotting.markdown_table([(1, 2), (3,)], ["a", "b"])
    with pytest.raises(ValueError, match="all mappings or all sequences"):
        plotting.markdown_table([dict(a=1), (1,)], ["a"])
    with pytest.raises(ValueError, match="at least one column"):
        plotting.markdown_table([])
    with pytest.raises(ValueError, match="does not have: \\['c'\\]"):
        plotting.markdown_table([dict(a=1)], formats={"c": ".2f"})
    with pytest.raises(ValueError, match="line break"):
        plotting.markdown_table([dict(a="x\ny")])
    with pytest.raises(ValueError, match="must return a str"):
        plotting.markdown_table([dict(a=1)], formats=lambda v: v)


def test_pooled_rank_frequencies_against_a_hand_count():
    # N = 3 members: 4 ranks, no pooling; frequencies relative to the mean count 5
    c, f = plotting.pooled_rank_frequencies([2, 4, 6, 8])
    np.testing.assert_allclose(c, [0.125, 0.375, 0.625, 0.875])
    np.testing.assert_allclose(f, [0.4, 0.8, 1.2, 1.6])
    # N = 5: 6 ranks pooled into 3 bins of two: means (1+3)/2, (5+7)/2, (9+11)/2 = 2, 6, 10 over 6
    c, f = plotting.pooled_rank_frequencies([1, 3, 5, 7, 9, 11], max_bins=3)
    np.testing.assert_allclose(c, [1 / 6, 0.5, 5 / 6])
    np.testing.assert_allclose(f, [2 / 6, 1.0, 10 / 6])
    # uneven groups (7 ranks into 3 bins: edges round(0, 7/3, 14/3, 7) = 0, 2, 5, 7): means of the groups
    c, f = plotting.pooled_rank_frequencies(np.arange(1, 8), max_bins=3)
    means = np.array([1.5, 4.0, 6.5])
    np.testing.assert_allclose(f, means / means.mean())
    # a flat histogram is flat at 1 whatever the pooling
    np.testing.assert_allclose(plotting.pooled_rank_frequencies(np.full(801, 7.0))[1], np.ones(21))


@pytest.mark.parametrize("counts, match", [([[1, 2]], r"shape \(N \+ 1,\)"), ([3], r"shape \(N \+ 1,\)"),
                                           ([1, -1], "non-negative"), ([0, 0], "not all zero"),
                                           ([1, np.nan], "finite")])
def test_pooled_rank_frequencies_refuses_bad_counts(counts, match):
    with pytest.raises(ValueError, match=match):
        plotting.pooled_rank_frequencies(counts)
    with pytest.raises(ValueError, match="max_bins"):
        plotting.pooled_rank_frequencies([1, 2], max_bins=0)


def test_running_mean_and_error_over_time():
    np.testing.assert_allclose(plotting.running_mean([1.0, 2.0, 3.0, 4.0], 2), [1.5, 2.5, 3.5])
    np.testing.assert_allclose(plotting.running_mean([1.0, 5.0], 1), [1.0, 5.0])
    with pytest.raises(ValueError, match=r"window must be an integer in \[1, 3\]"):
        plotting.running_mean([1.0, 2.0, 3.0], 4)
    fig, ax = plt.subplots()
    line = plotting.plot_error_over_time(ax, [0.1, 0.2, 0.3, 0.4], [4.0, 2.0, 2.0, 0.0], window=2, color="r",
                                         label="ETKF")
    assert ax.get_lines() == [line] and line.get_label() == "ETKF"
    np.testing.assert_allclose(line.get_xdata(), [0.2, 0.3, 0.4])
    np.testing.assert_allclose(line.get_ydata(), [3.0, 2.0, 1.0])
    with pytest.raises(ValueError, match=r"got \(3,\) and \(2,\)"):
        plotting.plot_error_over_time(ax, [0.1, 0.2, 0.3], [1.0, 2.0])
    plt.close(fig)


def test_plot_rank_histogram_draws_one_step_line():
    fig, ax = plt.subplots()
    line = plotting.plot_rank_histogram(ax, [2, 4, 6, 8], color="k", label="EnKF (N=3)")
    assert ax.get_lines() == [line] and line.get_drawstyle() == "steps-mid"
    np.testing.assert_allclose(line.get_ydata(), [0.4, 0.8, 1.2, 1.6])
    assert line.get_label() == "EnKF (N=3)"
    plt.close(fig)


def test_tuning_heatmap_labels_every_cell():
    vals = np.array([[0.5, np.inf], [0.25, 0.125]])
    fig, ax = plt.subplots()
    image, texts = plotting.tuning_heatmap(ax, vals, [3, 10], [1.0, 1.02], log=True, highlight=(1, 1),
                                           xlabel="inflation", ylabel="N", title="RMSE")
    assert [t.get_text() for t in texts] == ["0.50", "div.", "0.25", "0.12"]
    assert [t.get_position() for t in texts] == [(0, 0), (1, 0), (0, 1), (1, 1)]
    assert texts[3].get_fontweight() == "bold" and texts[0].get_fontweight() != "bold"
    data = image.get_array()
    np.testing.assert_allclose(data[0, 0], np.log10(0.5))
    np.testing.assert_allclose(data[1, 1], np.log10(0.125))
    assert np.ma.is_masked(data[0, 1]) or np.isnan(data[0, 1])  # the diverged cell is left blank
    assert [t.get_text() for t in ax.get_xticklabels()] == ["1.0", "1.02"]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["3", "10"]
    assert (ax.get_xlabel(), ax.get_ylabel(), ax.get_title()) == ("inflation", "N", "RMSE")
    _, texts = plotting.tuning_heatmap(ax, vals, [3, 10], [1.0, 1.02], text_color=lambda v: "w" if v > 0.3 else "k")
    assert [t.get_color() for t in texts] == ["w", "w", "k", "k"]
    with pytest.raises(ValueError, match=r"labels must have shapes \(2,\) and \(2,\), got \(1,\) and \(2,\)"):
        plotting.tuning_heatmap(ax, vals, [3], [1.0, 1.02])
    with pytest.raises(ValueError, match="positive"):
        plotting.tuning_heatmap(ax, -vals, [3, 10], [1.0, 1.02], log=True)
    with pytest.raises(ValueError, match="highlight"):
        plotting.tuning_heatmap(ax, vals, [3, 10], [1.0, 1.02], highlight=(2, 0))
    with pytest.raises(ValueError, match=r"shape \(rows, columns\)"):
        plotting.tuning_heatmap(ax, vals[0], [3, 10], [1.0, 1.02])
    plt.close(fig)


def test_importing_the_library_does_not_import_matplotlib():
    code = "import sys, assimilax, assimilax.plotting, assimilax.configs; print('matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
