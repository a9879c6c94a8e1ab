"""The search's data: checks against the model and the splits made when some are missing."""
import numpy as np
import pytest

from eenn.augment.data import dataset_from_arrays, load_dataset, stratified_split
from eenn.augment.features import AugmentConfig, augment
from eenn.errors import EennError

SHAPE = (8, 3)


def arrays(n=100, classes=4, seed=0, **extra):
    rng = np.random.default_rng(seed)
    d = {"x_train": rng.normal(size=(n,) + SHAPE).astype(np.float32), "y_train": rng.integers(0, classes, n)}
    d.update(extra)
    return d


def test_missing_val_and_test_are_split_off_train_stratified_and_seeded():
    a = arrays(200)
    ds = dataset_from_arrays(a, SHAPE, 4, seed=3)
    assert ds.calibration == "split" and ds.test_source == "split"
    assert len(ds.y_train) + len(ds.y_cal) + len(ds.y_test) == 200
    assert len(ds.y_test) == pytest.approx(40, abs=4) and len(ds.y_cal) == pytest.approx(32, abs=4)
    # disjoint: every training row appears once
    rows = np.concatenate([ds.x_train, ds.x_cal, ds.x_test]).reshape(200, -1)
    assert len(np.unique(rows, axis=0)) == 200
    again = dataset_from_arrays(a, SHAPE, 4, seed=3)
    assert again.sha256 == ds.sha256
    assert dataset_from_arrays(a, SHAPE, 4, seed=4).sha256 != ds.sha256
    assert len(ds.notes) == 2


def test_given_splits_one_hot_and_train_calibration():
    a = arrays(60, x_val=np.zeros((10,) + SHAPE), y_val=np.eye(4)[np.arange(10) % 4],
               x_test=np.ones((12,) + SHAPE), y_test=np.arange(12) % 4)
    ds = dataset_from_arrays(a, SHAPE, 4)
    assert ds.calibration == "val" and ds.test_source == "given"
    assert ds.y_cal.tolist() == (np.arange(10) % 4).tolist() and ds.y_cal.dtype == np.int64
    tr = dataset_from_arrays(a, SHAPE, 4, calibration="train")
    assert tr.calibration == "train" and np.array_equal(tr.x_cal, tr.x_train)
    assert any("correction" in n for n in tr.notes)


@pytest.mark.parametrize("bad, message", [
    ({"x_train": np.zeros((10, 8, 4))}, r"samples of shape \(8, 4\) do not match the model input \(8, 3\)"),
    ({"y_train": np.arange(100) % 7}, r"label\(s\) out of range .* labels must be 0 … 3"),
    ({"y_train": -np.ones(100, dtype=int)}, "out of range"),
    ({"y_train": np.full(100, 0.5)}, "must be integers"),
    ({"y_train": np.zeros(99, dtype=int)}, "99 labels for 100 samples"),
    ({"x_val": np.zeros((0,) + SHAPE), "y_val": np.zeros(0, dtype=int)}, "calibration split .* is empty"),
    ({"x_val": np.zeros((3,) + SHAPE)}, "x_val and y_val must be given together"),
    ({"x_train": np.full((100,) + SHAPE, np.nan, dtype=np.float32)}, "NaN"),
])
def test_bad_inputs_are_clear_errors(bad, message):
    a = arrays(100)
    a.update(bad)
    with pytest.raises(EennError, match=message):
        dataset_from_arrays(a, SHAPE, 4)


def test_file_errors(tmp_path):
    with pytest.raises(EennError, match="not found"):
        load_dataset(tmp_path / "none.npz", SHAPE, 4)
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(EennError, match="not an .npz archive"):
        load_dataset(tmp_path / "bad.npz", SHAPE, 4)
    np.savez(tmp_path / "nox.npz", y_train=np.zeros(3))
    with pytest.raises(EennError, match="missing array 'x_train'"):
        load_dataset(tmp_path / "nox.npz", SHAPE, 4)


def test_stratified_split_keeps_every_class():
    y = np.repeat(np.arange(5), [2, 3, 10, 50, 7])
    keep, held = stratified_split(y, 0.2, 0)
    assert set(y[held]) == set(range(5)) and set(y[keep]) == set(range(5))
    assert len(np.intersect1d(keep, held)) == 0 and len(keep) + len(held) == len(y)


def test_augment_shifts_along_the_first_axis():
    x = np.arange(2 * 10 * 1, dtype=np.float32).reshape(2, 10, 1)
    xa, ya = augment(x, np.array([0, 1]), AugmentConfig(copies=3, shift=0.2), seed=0)
    assert xa.shape == (8, 10, 1) and ya.tolist() == [0, 1] * 4
    assert np.array_equal(xa[:2], x)
    for i in range(2, 8):
        row = xa[i, :, 0]
        src = x[i % 2, :, 0]
        shifts = [s for s in range(-2, 3) if np.array_equal(row, src[np.clip(np.arange(10) - s, 0, 9)])]
        assert shifts, row


@pytest.mark.parametrize("content, what", [(b"x_train,y_train\n1,2\n", "a text file"), (b"", "an empty file"),
                                           (None, "a single NumPy array (.npy)")])
def test_a_file_that_is_no_npz_archive_says_so(tmp_path, content, what):
    p = tmp_path / "data.npz"
    if content is None:
        with open(p, "wb") as fh:
            np.save(fh, np.zeros(3))
    else:
        p.write_bytes(content)
    with pytest.raises(EennError) as err:
        load_dataset(p, SHAPE, 4)
    msg = str(err.value)
    assert str(p) in msg and "not an .npz archive" in msg and what in msg and "pickle" not in msg


def test_one_class_in_the_training_labels_is_an_error():
    a = arrays(100)
    a["y_train"] = np.full(100, 2)
    with pytest.raises(EennError, match=r"y_train holds only class 2: a classifier search needs at least 2 classes"):
        dataset_from_arrays(a, SHAPE, 4)


@pytest.mark.parametrize("split", ["val", "test"])
def test_one_class_in_a_given_calibration_or_test_split_is_an_error(split):
    rng = np.random.default_rng(1)
    a = arrays(100, **{f"x_{split}": rng.normal(size=(20,) + SHAPE).astype(np.float32),
                       f"y_{split}": np.zeros(20, dtype=np.int64)})
    with pytest.raises(EennError, match=rf"y_{split} holds only class 0: the (calibration|test) split needs at least 2"):
        dataset_from_arrays(a, SHAPE, 4)


def test_a_split_lacking_some_classes_is_noted():
    rng = np.random.default_rng(2)
    a = arrays(100, x_test=rng.normal(size=(20,) + SHAPE).astype(np.float32), y_test=np.arange(20) % 2)
    ds = dataset_from_arrays(a, SHAPE, 4)
    assert any("the test split lacks class(es) 2, 3" in n for n in ds.notes)
