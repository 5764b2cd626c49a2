"""Every malformed input gives an error naming the file and the problem."""
import warnings

import numpy as np
import pytest
import torch

from mmgraph.data import (DataValidationError, build_hetero, load_dataset, read_features,
                          read_mmrec, read_npy_splits, split_edge_index, validate_hetero,
                          validate_interactions)

HEADER = "userID\titemID\trating\ttimestamp\tx_label\n"
GOOD = [(0, 0, 0), (0, 1, 0), (1, 1, 0), (1, 2, 0), (0, 2, 1), (1, 0, 2)]


def inter(tmp_path, rows, header=HEADER, name="d"):
    text = header + "".join("\t".join([str(r[0]), str(r[1]), "0", "0", str(r[2])]) + "\n"
                            for r in rows)
    path = tmp_path / f"{name}.inter"
    path.write_text(text)
    return path


def npy(tmp_path, train, valid, test):
    for s, e in (("train", train), ("valid", valid), ("test", test)):
        np.save(tmp_path / f"{s}.npy", np.asarray(e))
    return tmp_path


GOOD_NPY = ([[0, 0, 1, 1], [0, 1, 1, 2]], [[0], [2]], [[1], [0]])


def test_good_inputs_load(tmp_path):
    data = read_mmrec(inter(tmp_path, GOOD))
    assert split_edge_index(data, "train").shape == (2, 4)
    validate_hetero(data, contiguous=True)


# ----------------------------------------------------------------- missing files
def test_missing_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_dataset(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match=r"NAME\.inter.*train\.npy"):
        load_dataset(tmp_path)                               # empty directory
    np.save(tmp_path / "train.npy", np.zeros((2, 1), np.int64))
    np.save(tmp_path / "valid.npy", np.zeros((2, 1), np.int64))
    with pytest.raises(FileNotFoundError, match=r"test\.npy"):
        load_dataset(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"other\.inter"):
        read_mmrec(tmp_path, name="other")
    with pytest.raises(FileNotFoundError, match=r"audio_feat\.npy"):
        read_features(tmp_path, 1, modalities=["audio"])


def test_several_inter_files_need_a_name(tmp_path):
    inter(tmp_path, GOOD, name="a")
    inter(tmp_path, GOOD, name="b")
    with pytest.raises(ValueError, match="several .inter"):
        load_dataset(tmp_path)
    assert load_dataset(tmp_path, name="b").name == "b"


# ----------------------------------------------------------------- columns
@pytest.mark.parametrize("header,missing", [
    ("userID\trating\ttimestamp\tx_label\n", "itemID"),
    ("user_id\titemID\trating\ttimestamp\tx_label\n", "userID"),
    ("userID\titemID\trating\ttimestamp\tlabel\n", "x_label"),
])
def test_missing_or_renamed_column(tmp_path, header, missing):
    path = tmp_path / "d.inter"
    path.write_text(header + "0\t0\t0\t0\n")
    with pytest.raises(DataValidationError, match=rf"d\.inter.*missing column.*'{missing}'"):
        read_mmrec(path)


def test_empty_file_and_short_line(tmp_path):
    (tmp_path / "e.inter").write_text("")
    with pytest.raises(DataValidationError, match=r"e\.inter: empty file"):
        read_mmrec(tmp_path / "e.inter")
    (tmp_path / "s.inter").write_text(HEADER + "0\t0\t0\t0\t0\n1\t1\n")
    with pytest.raises(DataValidationError, match=r"s\.inter line 3"):
        read_mmrec(tmp_path / "s.inter")


# ----------------------------------------------------------------- ids
def test_negative_ids(tmp_path):
    rows = GOOD + [(-1, 0, 0)]
    with pytest.raises(DataValidationError, match=r"d\.inter line 8: 1 negative user id"):
        read_mmrec(inter(tmp_path, rows))
    train = [[0, 0, 1, 1], [0, 1, 1, -2]]
    with pytest.raises(DataValidationError, match=r"train\.npy.*negative item id.*-2"):
        read_npy_splits(npy(tmp_path, train, *GOOD_NPY[1:]))


def test_non_integer_ids(tmp_path):
    rows = GOOD[:2] + [(1.5, 1, 0)] + GOOD[2:]
    with pytest.raises(DataValidationError, match=r"d\.inter line 4: 1 non-integer user id.*1\.5"):
        read_mmrec(inter(tmp_path, rows))
    rows = GOOD + [(0, "abc", 0)]
    with pytest.raises(DataValidationError, match=r"d\.inter line 8: column 'itemID'.*'abc'"):
        read_mmrec(inter(tmp_path, rows))
    valid = np.array([[0.0], [2.5]])
    with pytest.raises(DataValidationError, match=r"valid\.npy.*non-integer item id"):
        read_npy_splits(npy(tmp_path, GOOD_NPY[0], valid, GOOD_NPY[2]))
    with pytest.raises(DataValidationError, match=r"valid\.npy.*must be integers.*bool"):
        read_npy_splits(npy(tmp_path, GOOD_NPY[0], np.ones((2, 1), bool), GOOD_NPY[2]))
    # integral floats are fine
    data = read_npy_splits(npy(tmp_path, np.array(GOOD_NPY[0], float), *GOOD_NPY[1:]))
    assert split_edge_index(data, "train").dtype == torch.long


def test_ids_out_of_range(tmp_path):
    path = inter(tmp_path, GOOD)
    with pytest.raises(DataValidationError, match=r"out of range \[0, 2\).*first 2.*num_items=2"):
        read_mmrec(path, num_items=2)
    with pytest.raises(DataValidationError, match=r"user id.*out of range \[0, 1\)"):
        read_npy_splits(npy(tmp_path, *GOOD_NPY), num_users=1)


def test_non_contiguous_ids(tmp_path):
    # item 3 and 5 never occur in 0..6: catalogue items, kept as cold items with a warning
    rows = [(0, 0, 0), (0, 1, 0), (1, 2, 0), (1, 4, 0), (0, 6, 1), (1, 0, 2)]
    with pytest.warns(UserWarning, match=r"d\.inter: 2 of the item ids 0\.\.6 occur in no "
                                         r"interaction \(first: 3, 5\); kept as cold items"):
        data = read_mmrec(inter(tmp_path, rows))
    assert data["item"].num_nodes == 7
    # validate_hetero(contiguous=True) still demands every item
    with pytest.raises(DataValidationError,
                       match=r"HeteroData: item ids are not contiguous: 2 of the ids 0\.\.6 never "
                             r"occur \(first missing: 3, 5\)"):
        validate_hetero(data, contiguous=True)
    # an explicit size larger than used ids also leaves a gap
    with pytest.raises(DataValidationError, match=r"user ids are not contiguous.*first missing: 2"):
        read_mmrec(inter(tmp_path, GOOD), num_users=3)


def test_transposed_edges(tmp_path):
    with pytest.raises(DataValidationError, match=r"train\.npy.*\[2, E\].*transposed"):
        read_npy_splits(npy(tmp_path, np.array(GOOD_NPY[0]).T, *GOOD_NPY[1:]))


def test_object_array(tmp_path):
    npy(tmp_path, *GOOD_NPY)
    np.save(tmp_path / "train.npy", np.array([[0, "a"], [1, 2]], dtype=object), allow_pickle=True)
    with pytest.raises(DataValidationError, match=r"train\.npy: cannot read"):
        read_npy_splits(tmp_path)


# ----------------------------------------------------------------- labels and splits
def test_bad_x_label(tmp_path):
    rows = GOOD + [(0, 0, 3)]
    with pytest.raises(DataValidationError, match=r"d\.inter line 8: x_label must be 0.*first 3"):
        read_mmrec(inter(tmp_path, rows))


@pytest.mark.parametrize("label,split", [(1, "valid"), (2, "test"), (0, "train")])
def test_empty_split_mmrec(tmp_path, label, split):
    rows = [r for r in GOOD if r[2] != label]
    with pytest.raises(DataValidationError, match=rf"d\.inter: the {split} split is empty"):
        read_mmrec(inter(tmp_path, rows))


def test_empty_split_npy(tmp_path):
    with pytest.raises(DataValidationError, match=r"test\.npy: the test split is empty"):
        read_npy_splits(npy(tmp_path, GOOD_NPY[0], GOOD_NPY[1], np.zeros((2, 0), np.int64)))


def test_user_without_training_interaction(tmp_path):
    rows = GOOD + [(2, 0, 1), (2, 1, 2)]           # user 2 only in valid/test
    with pytest.raises(DataValidationError, match=r"d\.inter: 1 user\(s\) have no training "
                                                  r"interaction \(first: 2\)"):
        read_mmrec(inter(tmp_path, rows), cold_users="error")


def test_cold_users_drop_default_and_keep(tmp_path):
    # user 2 has valid/test but no train edge, user 1 has a rating column to stay aligned
    rows = GOOD + [(2, 0, 1), (2, 1, 2), (3, 0, 0)]
    path = inter(tmp_path, rows)
    with pytest.warns(UserWarning, match=r"d\.inter: 1 user\(s\) have no training interaction "
                                         r"\(first: 2\); dropped their 2 valid/test "
                                         r"interaction\(s\) \(valid: 1, test: 1\)"):
        data = load_dataset(path)
    assert data["user"].num_nodes == 4                       # id space unchanged
    assert split_edge_index(data, "valid").tolist() == [[0], [2]]
    assert split_edge_index(data, "test").tolist() == [[1], [0]]
    validate_hetero(data)                                     # user 2 has no edge at all: fine
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        kept = load_dataset(path, cold_users="keep")
    assert split_edge_index(kept, "valid").tolist() == [[0, 2], [2, 0]]
    assert split_edge_index(kept, "test").tolist() == [[1, 2], [0, 1]]
    with pytest.raises(DataValidationError, match="no training interaction"):
        validate_hetero(kept)
    validate_hetero(kept, cold_users="keep")
    with pytest.raises(ValueError, match=r"cold_users must be one of \('drop', 'error', 'keep'\)"):
        load_dataset(path, cold_users="ignore")


def test_cold_users_drop_keeps_extras_aligned(tmp_path):
    (tmp_path / "r.inter").write_text(
        HEADER + "0\t0\t5\t10\t0\n1\t1\t4\t11\t0\n2\t0\t3\t12\t1\n0\t1\t2\t13\t1\n"
        "2\t1\t1\t14\t2\n1\t0\t7\t15\t2\n")
    with pytest.warns(UserWarning, match="dropped their 2 valid/test"):
        data = read_mmrec(tmp_path / "r.inter")
    from mmgraph.data import split_edge_attr
    assert split_edge_attr(data, "valid", "rating").tolist() == [2.0]
    assert split_edge_attr(data, "test", "timestamp").tolist() == [15]


def test_cold_users_drop_empties_a_split(tmp_path):
    rows = [(0, 0, 0), (0, 1, 0), (1, 1, 1), (0, 2, 2)]     # the only valid edge is user 1's
    with pytest.raises(DataValidationError, match=r"d\.inter: the valid split is empty after "
                                                  r"dropping"):
        with pytest.warns(UserWarning):
            read_mmrec(inter(tmp_path, rows))


def test_duplicates_removed_with_warning(tmp_path):
    # (0,1) twice in train, (1,1) in train and test, (0,2) in valid and test
    rows = GOOD[:5] + [(0, 1, 0), (1, 1, 2), (0, 2, 2)] + GOOD[5:]
    with pytest.warns(UserWarning, match=r"removed 3 duplicate.*train: 1, test: 2"):
        data = read_mmrec(inter(tmp_path, rows))
    assert split_edge_index(data, "train").tolist() == [[0, 0, 1, 1], [0, 1, 1, 2]]
    assert split_edge_index(data, "valid").tolist() == [[0], [2]]
    assert split_edge_index(data, "test").tolist() == [[1], [0]]
    # clean data does not warn
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        read_mmrec(inter(tmp_path, GOOD))


# ----------------------------------------------------------------- features
def test_feature_rows_mismatch(tmp_path):
    inter(tmp_path, GOOD)
    np.save(tmp_path / "image_feat.npy", np.zeros((4, 8), np.float32))
    with pytest.raises(DataValidationError, match=r"image_feat\.npy: image features have 4 rows "
                                                  r"but the dataset has 3 items"):
        load_dataset(tmp_path)


def test_feature_nan_inf(tmp_path):
    inter(tmp_path, GOOD)
    f = np.zeros((3, 4), np.float32)
    f[1, 2] = np.nan
    f[2, 0] = np.inf
    np.save(tmp_path / "text_feat.npy", f)
    with pytest.raises(DataValidationError, match=r"text_feat\.npy: text features contain NaN/inf "
                                                  r"in 2 row\(s\) \(first items: 1, 2\)"):
        load_dataset(tmp_path)


def test_feature_shape_and_dtype(tmp_path):
    inter(tmp_path, GOOD)
    np.save(tmp_path / "image_feat.npy", np.zeros(3, np.float32))
    with pytest.raises(DataValidationError, match=r"image_feat\.npy.*\[n_items, dim\]"):
        load_dataset(tmp_path)
    np.save(tmp_path / "image_feat.npy", np.array([["a"], ["b"], ["c"]]))
    with pytest.raises(DataValidationError, match=r"image_feat\.npy.*real-valued"):
        load_dataset(tmp_path)


def test_float16_features_cast(tmp_path):
    inter(tmp_path, GOOD)
    f = (np.arange(12).reshape(3, 4) / 7).astype(np.float16)
    np.save(tmp_path / "image_feat.npy", f)
    x = load_dataset(tmp_path)["item"].x_image
    assert x.dtype == torch.float32
    assert torch.equal(x, torch.from_numpy(f.astype(np.float32)))


# ----------------------------------------------------------------- in-memory API
def test_validate_interactions_arrays():
    out = validate_interactions({"train": torch.tensor(GOOD_NPY[0]), "valid": GOOD_NPY[1],
                                 "test": GOOD_NPY[2]})
    assert (out.num_users, out.num_items) == (2, 3)
    with pytest.raises(DataValidationError, match="mine: 1 user"):
        validate_interactions({"train": [[0], [0]], "test": [[1], [0]]}, sources="mine",
                              cold_users="error")


def test_validate_hetero_catches_bad_data():
    data = build_hetero(2, 2, np.array([[0, 1], [0, 1]]), np.array([[0], [1]]),
                        np.array([[1], [0]]), {"image": np.ones((2, 3))})
    validate_hetero(data)
    data["item"].x_image[0, 0] = float("nan")
    with pytest.raises(DataValidationError, match="NaN"):
        validate_hetero(data)
    data = build_hetero(3, 2, np.array([[0, 1], [0, 1]]), np.array([[2], [1]]),
                        np.array([[1], [0]]))
    with pytest.raises(DataValidationError, match="no training interaction"):
        validate_hetero(data)
    del data["user", "interacts", "item"].test_edge_index
    with pytest.raises(DataValidationError, match="no 'test' interactions"):
        validate_hetero(data)
