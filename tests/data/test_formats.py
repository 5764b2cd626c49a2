"""The other layouts (DiffMM, LATTICE JSON, RecBole): hand-made folders, round
trips through every layout, bad inputs naming the file, conversion."""
import pickle
import warnings

import numpy as np
import pytest
import torch

from conftest import SHARED_DATA
from test_io import assert_same, toy

from mmgraph.data import (LAYOUTS, DataValidationError, convert_dataset, detect_layout,
                          load_dataset, modality_features, read_diffmm, read_json,
                          split_edge_attr, split_edge_index, write_diffmm, write_json, write_mmrec,
                          write_npy_splits, write_recbole)

sp = pytest.importorskip("scipy.sparse")

WRITE = {"mmrec": lambda d, p: write_mmrec(d, p, "toy"), "npy": write_npy_splits,
         "diffmm": write_diffmm, "json": write_json, "recbole": lambda d, p: write_recbole(d, p, "toy")}


# ----------------------------------------------------------------- round trips
@pytest.mark.parametrize("layout", LAYOUTS)
def test_round_trip_every_layout(tmp_path, layout):
    """ours -> theirs -> ours gives identical data, and back to MMRec too."""
    data = toy()
    WRITE[layout](data, tmp_path / layout)
    assert detect_layout(tmp_path / layout) == layout
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        back = load_dataset(tmp_path / layout)
    assert_same(data, back)
    assert "token" not in back["user"] and "token" not in back["item"]   # identity maps
    write_mmrec(back, tmp_path / "again", "toy")
    assert_same(load_dataset(tmp_path / "again"), data)


@pytest.mark.parametrize("layout", ["diffmm", "json", "recbole"])
def test_layouts_agree_on_synthetic(tmp_path, layout):
    data = load_dataset("synthetic:tiny?image_dim=12&text_dim=5")
    WRITE[layout](data, tmp_path)
    back = load_dataset(tmp_path, layout=layout)
    assert_same(data, back)


def test_recbole_keeps_ratings_and_timestamps(tmp_path):
    (tmp_path / "r.inter").write_text(
        "userID\titemID\trating\ttimestamp\tx_label\n"
        "0\t0\t5\t1400000000\t0\n1\t1\t3.5\t1400000001\t0\n0\t1\t1\t1400000002\t1\n"
        "1\t0\t4\t1400000003\t2\n")
    data = load_dataset(tmp_path)
    write_recbole(data, tmp_path / "rb", "r")
    assert (tmp_path / "rb" / "r.train.inter").read_text().splitlines() == [
        "user_id:token\titem_id:token\trating:float\ttimestamp:float",
        "0\t0\t5.0\t1400000000", "1\t1\t3.5\t1400000001"]
    back = load_dataset(tmp_path / "rb")
    for s in ("train", "valid", "test"):
        for col in ("rating", "timestamp"):
            assert torch.equal(split_edge_attr(back, s, col), split_edge_attr(data, s, col))


# ----------------------------------------------------------------- DiffMM, by hand
def _pickle(path, obj):
    with open(path, "wb") as f:
        pickle.dump(obj, f)


def diffmm_folder(path, trn=None):
    path.mkdir(exist_ok=True)
    # 3 users x 4 items; CSR (row-major) train with an explicit zero, COO valid/test
    trn = trn if trn is not None else sp.csr_matrix(
        np.array([[1, 0, 1, 0], [0, 1, 0, 0], [1, 0, 0, 0]], np.float32))
    _pickle(path / "trnMat.pkl", trn)
    _pickle(path / "valMat.pkl", sp.coo_matrix(([1.0, 0.0], ([1, 0], [2, 3])), shape=(3, 4)))
    _pickle(path / "tstMat.pkl", sp.coo_matrix(([1.0, 1.0], ([2, 0], [3, 1])), shape=(3, 4)))
    np.save(path / "image_feat.npy", (np.arange(8).reshape(4, 2) / 4).astype(np.float16))
    return path


def test_diffmm_hand_made(tmp_path):
    path = diffmm_folder(tmp_path / "tiktok")
    assert detect_layout(path) == "diffmm"
    data = load_dataset(path)
    assert data.name == "tiktok"
    assert (data["user"].num_nodes, data["item"].num_nodes) == (3, 4)    # from the shape
    assert split_edge_index(data, "train").tolist() == [[0, 0, 1, 2], [0, 2, 1, 0]]
    assert split_edge_index(data, "valid").tolist() == [[1], [2]]       # explicit 0 is no edge
    assert split_edge_index(data, "test").tolist() == [[2, 0], [3, 1]]  # COO order kept
    x = data["item"].x_image
    assert x.dtype == torch.float32 and x[3].tolist() == [1.5, 1.75]
    assert_same(read_diffmm(path), data)


def test_diffmm_bad_inputs(tmp_path):
    path = diffmm_folder(tmp_path / "d")
    (path / "valMat.pkl").unlink()
    with pytest.raises(FileNotFoundError, match=r"missing file .*valMat\.pkl \(DiffMM layout"):
        load_dataset(path, layout="diffmm")
    diffmm_folder(path, trn=sp.csr_matrix(np.eye(3, 5, dtype=np.float32)))
    with pytest.raises(DataValidationError, match=r"shapes differ \(trnMat\.pkl \(3, 5\), "
                                                  r"valMat\.pkl \(3, 4\)"):
        load_dataset(path)
    _pickle(path / "trnMat.pkl", {"not": "a matrix"})
    with pytest.raises(DataValidationError, match=r"trnMat\.pkl: expected a pickled scipy sparse "
                                                  r"matrix \[users, items\], got dict"):
        load_dataset(path)
    (path / "trnMat.pkl").write_bytes(b"garbage")
    with pytest.raises(DataValidationError, match=r"trnMat\.pkl: cannot unpickle"):
        load_dataset(path)
    diffmm_folder(path)
    with pytest.raises(DataValidationError, match=r"trnMat\.pkl: the matrices have 4 items but "
                                                  r"num_items=5"):
        load_dataset(path, num_items=5)
    np.save(path / "image_feat.npy", np.zeros((5, 2), np.float32))
    with pytest.raises(DataValidationError, match=r"image_feat\.npy: image features have 5 rows"):
        load_dataset(path)


# ----------------------------------------------------------------- LATTICE JSON, by hand
def json_folder(path):
    core = path / "5-core"
    core.mkdir(parents=True)
    (core / "train.json").write_text('{"0": [0, 2], "1": [1], "2": [0, 3]}')
    (core / "val.json").write_text('{"0": [3], "1": [], "2": []}')
    (core / "test.json").write_text('{"1": [2], "2": [1]}')
    np.save(path / "image_feat.npy", np.ones((4, 3), np.float64))
    np.save(path / "text_feat.npy", np.zeros((4, 2), np.float32))
    return path


def test_json_hand_made(tmp_path):
    path = json_folder(tmp_path / "sports")
    assert detect_layout(path) == "json"
    data = load_dataset(path)
    assert data.name == "sports"
    assert split_edge_index(data, "train").tolist() == [[0, 0, 1, 2, 2], [0, 2, 1, 0, 3]]
    assert split_edge_index(data, "valid").tolist() == [[0], [3]]
    assert split_edge_index(data, "test").tolist() == [[1, 2], [2, 1]]
    assert sorted(modality_features(data)) == ["image", "text"]
    # the k-core folder itself works, features from its parent
    assert_same(read_json(path / "5-core"), data)
    (path / "10-core").mkdir()
    (path / "10-core" / "train.json").write_text("{}")
    with pytest.raises(ValueError, match=r"several k-core folders \(5-core, 10-core\); pass core=K"):
        load_dataset(path, cache=False)
    assert_same(load_dataset(path, core=5), data)


@pytest.mark.parametrize("text,msg", [
    ('{"0": [0, 2],', r"train\.json line 1: invalid JSON"),
    ('{"zero": [0]}', r"train\.json: user key 'zero' is not an integer id"),
    ('{"0": 3}', r"train\.json: user '0' maps to int, expected a list of item ids"),
    ('{"0": ["a"]}', r"train\.json: user '0' has non-numeric item id 'a'"),
    ('[[0, 1]]', r"train\.json: expected an object"),
    ('{"0": [0, -1]}', r"train\.json.*1 negative item id"),
])
def test_json_bad_inputs(tmp_path, text, msg):
    path = json_folder(tmp_path / "d")
    (path / "5-core" / "train.json").write_text(text)
    with pytest.raises(DataValidationError, match=msg):
        load_dataset(path)


def test_json_missing_file(tmp_path):
    path = json_folder(tmp_path / "d")
    (path / "5-core" / "test.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"missing file .*5-core/test\.json"):
        load_dataset(path)


# ----------------------------------------------------------------- RecBole, by hand
H = "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"


def recbole_folder(path, item=True):
    path.mkdir(parents=True, exist_ok=True)
    (path / "ml.train.inter").write_text(H + "bob\tB07\t5\t10\nann\tA01\t4\t11\nbob\tA01\t3\t12\n"
                                             "cat\tB07\t2\t13\n")
    (path / "ml.valid.inter").write_text(H + "ann\tB07\t1\t14\n")
    (path / "ml.test.inter").write_text(H + "cat\tA01\t5\t15\nbob\tC99\t4\t16\n")
    if item:   # Z00: a catalogue item without interactions
        (path / "ml.item").write_text("item_id:token\timage_feat:float_seq\tprice:float\n"
                                      "C99\t3 3.5\t1\nA01\t1 1.5\t1\nZ00\t9 9\t2\nB07\t2 2.5\t1\n")
    return path


def test_recbole_hand_made_tokens(tmp_path):
    path = recbole_folder(tmp_path / "ml")
    assert detect_layout(path) == "recbole"
    with pytest.warns(UserWarning, match=r"1 of the item ids 0\.\.3 occur in no interaction "
                                         r"\(first: 3\)"):
        data = load_dataset(path)
    assert data.name == "ml"
    # tokens sorted as strings: ann, bob, cat / A01, B07, C99, Z00
    assert data["user"].token == ["ann", "bob", "cat"]
    assert data["item"].token == ["A01", "B07", "C99", "Z00"]
    assert split_edge_index(data, "train").tolist() == [[1, 0, 1, 2], [1, 0, 0, 1]]
    assert split_edge_index(data, "valid").tolist() == [[0], [1]]
    assert split_edge_index(data, "test").tolist() == [[2, 1], [0, 2]]
    assert data["item"].x_image.tolist() == [[1, 1.5], [2, 2.5], [3, 3.5], [9, 9]]
    assert split_edge_attr(data, "test", "timestamp").tolist() == [15, 16]
    assert split_edge_attr(data, "train", "rating").tolist() == [5.0, 4.0, 3.0, 2.0]
    # tokens survive a RecBole round trip
    write_recbole(data, tmp_path / "out", "ml")
    with pytest.warns(UserWarning, match="occur in no interaction"):
        back = load_dataset(tmp_path / "out")
    assert_same(back, data)
    assert back["item"].token == data["item"].token


def test_recbole_numeric_tokens_sort_numerically(tmp_path):
    (tmp_path / "n.train.inter").write_text("user_id:token\titem_id:token\n10\t2\n9\t10\n")
    (tmp_path / "n.valid.inter").write_text("user_id:token\titem_id:token\n10\t10\n")
    (tmp_path / "n.test.inter").write_text("user_id:token\titem_id:token\n9\t2\n")
    data = load_dataset(tmp_path)
    assert data["user"].token == ["9", "10"] and data["item"].token == ["2", "10"]
    assert split_edge_index(data, "train").tolist() == [[1, 0], [0, 1]]


def test_recbole_unsplit_inter(tmp_path):
    rows = "".join(f"u{u}\ti{(u * 7 + k) % 20}\n" for u in range(30) for k in range(10))
    (tmp_path / "all.inter").write_text("user_id:token\titem_id:token\n" + rows)
    data = load_dataset(tmp_path)
    counts = [split_edge_index(data, s).size(1) for s in ("train", "valid", "test")]
    assert counts == [240, 30, 30]                          # 10 per user -> 8/1/1
    again = load_dataset(tmp_path, cache=False)
    assert_same(data, again)                                 # seeded
    other = load_dataset(tmp_path, seed=1, cache=False)
    assert not torch.equal(split_edge_index(other, "test"), split_edge_index(data, "test"))


def test_recbole_bad_inputs(tmp_path):
    path = recbole_folder(tmp_path / "a")
    (path / "ml.valid.inter").write_text("user_id\titem_id:token\nann\tB07\n")
    with pytest.raises(DataValidationError, match=r"ml\.valid\.inter: header field 'user_id' has "
                                                  r"no type"):
        load_dataset(path)
    (path / "ml.valid.inter").write_text(H + "ann\tB07\t1\n")
    with pytest.raises(DataValidationError, match=r"ml\.valid\.inter line 2: 3 field\(s\), the "
                                                  r"header has 4"):
        load_dataset(path)
    (path / "ml.valid.inter").write_text(H + "ann\tB07\tgood\t14\n")
    with pytest.raises(DataValidationError, match=r"ml\.valid\.inter line 2: column 'rating' has "
                                                  r"non-numeric value 'good'"):
        load_dataset(path)
    (path / "ml.valid.inter").write_text("uid:token\titem_id:token\nann\tC99\n")
    with pytest.raises(DataValidationError, match=r"ml\.valid\.inter: missing column\(s\) 'user_id'"):
        load_dataset(path)
    (path / "ml.train.inter").write_text("uid:token\titem_id:token\nann\tB07\n")
    (path / "ml.test.inter").write_text("uid:token\titem_id:token\nann\tA01\n")
    (path / "ml.item").unlink()
    assert load_dataset(path, user_field="uid")["user"].token == ["ann"]    # other id column
    recbole_folder(path)
    (path / "ml.item").write_text("item_id:token\timage_feat:float_seq\nA01\t1 1\nB07\t2\nC99\t3 3\n")
    with pytest.raises(DataValidationError, match=r"ml\.item line 3: column 'image_feat' has 1 "
                                                  r"values, earlier rows have 2"):
        load_dataset(path)
    (path / "ml.item").write_text("item_id:token\timage_feat:float_seq\nA01\t1 1\nB07\t2 x\nC99\t3 3\n")
    with pytest.raises(DataValidationError, match=r"ml\.item line 3: column 'image_feat' is not a "
                                                  r"sequence of numbers"):
        load_dataset(path)
    (path / "ml.item").write_text("item_id:token\timage_feat:float_seq\nA01\t1 1\nB07\t2 2\n")
    with pytest.raises(DataValidationError, match=r"ml\.item: 1 item\(s\) of the interactions "
                                                  r"have no row \(first: 'C99'\)"):
        load_dataset(path)
    (path / "ml.test.inter").unlink()
    with pytest.raises(FileNotFoundError, match=r"missing file .*ml\.test\.inter"):
        load_dataset(path)


# ----------------------------------------------------------------- options, errors
def test_layout_option_and_unknown_options(tmp_path):
    write_npy_splits(toy(), tmp_path)
    with pytest.raises(ValueError, match=r"unknown layout 'csv'; expected one of mmrec, npy, "
                                         r"diffmm, json, recbole"):
        load_dataset(tmp_path, layout="csv")
    with pytest.raises(ValueError, match=r"unknown option\(s\) 'colour' for the 'npy' layout"):
        load_dataset(tmp_path, colour="red")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"no dataset found.*trnMat\.pkl.*train\.json"):
        load_dataset(tmp_path / "empty")


# ----------------------------------------------------------------- conversion
@pytest.mark.parametrize("to", LAYOUTS)
def test_convert_round_trips(tmp_path, to):
    data = toy()
    write_mmrec(data, tmp_path / "src", "toy")
    out = convert_dataset(tmp_path / "src", tmp_path / to, to)
    assert detect_layout(out) == to
    assert_same(load_dataset(out), data)
    convert_dataset(out, tmp_path / "back", "mmrec", name="toy")
    assert (tmp_path / "back" / "toy.inter").read_text() == (tmp_path / "src" / "toy.inter").read_text()


def test_convert_keeps_cold_users(tmp_path):
    (tmp_path / "c.inter").write_text("userID\titemID\tx_label\n0\t0\t0\n0\t1\t1\n1\t1\t2\n"
                                      "0\t2\t2\n")
    convert_dataset(tmp_path, tmp_path / "d", "diffmm")
    with pytest.warns(UserWarning, match=r"1 user\(s\) have no training interaction"):
        dropped = load_dataset(tmp_path / "d")
    assert split_edge_index(dropped, "test").tolist() == [[0], [2]]
    assert split_edge_index(load_dataset(tmp_path / "d", cold_users="keep"), "test").tolist() == \
        [[1, 0], [1, 2]]


def test_cli_convert(tmp_path, capsys):
    from mmgraph.cli import main
    write_mmrec(toy(), tmp_path / "src", "toy")
    assert main(["convert", str(tmp_path / "src"), str(tmp_path / "js"), "--to", "json"]) == 0
    assert "json" in capsys.readouterr().out
    assert_same(load_dataset(tmp_path / "js"), toy())
    assert main(["convert", str(tmp_path / "nowhere"), str(tmp_path / "x"), "--to", "npy"]) == 2
    assert "does not exist" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["convert", str(tmp_path / "src"), str(tmp_path / "x"), "--to", "csv"])


# ----------------------------------------------------------------- real TikTok vs DiffMM layout
def test_tiktok_mmrec_equals_diffmm_fixture(tmp_path):
    """The shared TikTok data and the same data written in DiffMM's original
    layout (float16 features, scipy matrices) give identical HeteroData."""
    src = SHARED_DATA / "tiktok"
    if not (src / "tiktok.inter").is_file():
        pytest.skip("../shared/data/tiktok is not present")
    raw = load_dataset(src, cold_users="keep", cache=False)
    write_diffmm(raw, tmp_path, features=False)
    for m, f in modality_features(raw).items():
        f = f.numpy()
        half = f.astype(np.float16)
        np.save(tmp_path / f"{m}_feat.npy", half if np.array_equal(half.astype(np.float32), f) else f)
    with pytest.warns(UserWarning, match=r"10 user\(s\) have no training interaction"):
        ours = load_dataset(src, cache=False)
    with pytest.warns(UserWarning, match=r"10 user\(s\) have no training interaction"):
        theirs = load_dataset(tmp_path, cache=False)
    assert_same(ours, theirs)
    assert (theirs["user"].num_nodes, theirs["item"].num_nodes) == (9308, 6710)
