"""Input edges found by probing (issue 13): encodings, blank lines, empty files, huge ids,
a split emptied by de-duplication. Each error names the file (and line) and the problem."""
import tracemalloc

import numpy as np
import pytest

from mmgraph.data import DataValidationError, read_features, read_mmrec, read_npy_splits
from mmgraph.data import split_edge_index, validate_interactions

HEADER = "userID\titemID\trating\ttimestamp\tx_label\n"
GOOD = [(0, 0, 0), (0, 1, 0), (1, 1, 0), (1, 2, 0), (0, 2, 1), (1, 0, 2)]


def _body(rows):
    return "".join(f"{u}\t{i}\t0\t0\t{x}\n" for u, i, x in rows)


def _write(tmp_path, data: bytes):
    path = tmp_path / "d.inter"
    path.write_bytes(data)
    return path


def test_utf8_bom_header_is_accepted(tmp_path):
    data = read_mmrec(_write(tmp_path, ("\ufeff" + HEADER + _body(GOOD)).encode()))
    assert split_edge_index(data, "train").shape == (2, 4)


def test_crlf_line_ends(tmp_path):
    data = read_mmrec(_write(tmp_path, (HEADER + _body(GOOD)).replace("\n", "\r\n").encode()))
    assert split_edge_index(data, "test").tolist() == [[1], [0]]


def test_non_utf8_bytes_named_with_line(tmp_path):
    raw = (HEADER + _body(GOOD[:3])).encode() + "1\t2\t0\t0\t0 caf\xe9\n".encode("latin-1")
    with pytest.raises(DataValidationError,
                       match=r"d\.inter line 5: not valid UTF-8 \(byte 0xe9\)"):
        read_mmrec(_write(tmp_path, raw + _body(GOOD[4:]).encode()))


def test_blank_lines_skipped_and_line_numbers_kept(tmp_path):
    text = HEADER + _body(GOOD[:2]) + "\n\t\t\t\t\n   \n" + _body(GOOD[2:]) + "\n\n"
    data = read_mmrec(_write(tmp_path, text.encode()))
    assert split_edge_index(data, "train").shape == (2, 4)
    # an error after the blank lines names the file's own line number (line 10, not 7)
    bad = HEADER + _body(GOOD[:2]) + "\n\t\t\t\t\n   \n" + _body(GOOD[2:5]) + "1\tx\t0\t0\t2\n"
    with pytest.raises(DataValidationError,
                       match=r"d\.inter line 10: column 'itemID' has non-numeric value 'x'"):
        read_mmrec(_write(tmp_path, bad.encode()))
    # x_label errors use the same line numbers
    bad = HEADER + "\n" + _body(GOOD) + "0\t0\t0\t0\t7\n"
    with pytest.raises(DataValidationError, match=r"d\.inter line 9: x_label must be"):
        read_mmrec(_write(tmp_path, bad.encode()))


def test_zero_byte_npy_named(tmp_path):
    for s, e in (("train", [[0, 0, 1, 1], [0, 1, 1, 2]]), ("valid", [[0], [2]]), ("test", [[1], [0]])):
        np.save(tmp_path / f"{s}.npy", np.asarray(e))
    (tmp_path / "image_feat.npy").write_bytes(b"")
    with pytest.raises(DataValidationError, match=r"image_feat\.npy: empty file \(0 bytes\)"):
        read_npy_splits(tmp_path)
    with pytest.raises(DataValidationError, match=r"image_feat\.npy: empty file"):
        read_features(tmp_path, 3)
    np.save(tmp_path / "image_feat.npy", np.ones((3, 4), np.float32))
    raw = (tmp_path / "image_feat.npy").read_bytes()
    (tmp_path / "image_feat.npy").write_bytes(raw[:100])        # truncated inside the data
    with pytest.raises(DataValidationError, match=r"image_feat\.npy: cannot read"):
        read_features(tmp_path, 3)
    (tmp_path / "valid.npy").write_bytes(b"")
    with pytest.raises(DataValidationError, match=r"valid\.npy: empty file \(0 bytes\)"):
        read_npy_splits(tmp_path)


def test_huge_id_refused_without_allocating(tmp_path):
    rows = GOOD + [(2 ** 40, 0, 0)]
    tracemalloc.start()
    try:
        with pytest.raises(DataValidationError,
                           match=r"user ids are not contiguous: 1099511627774 of the ids "
                                 r"0\.\.1099511627776 never occur \(first missing: 2, 3, 4, 5, 6"):
            read_mmrec(_write(tmp_path, (HEADER + _body(rows)).encode()))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 50 * 2 ** 20, peak
    # an explicit huge size is bounded the same way
    with pytest.raises(DataValidationError, match="item ids are not contiguous"):
        validate_interactions({"train": [[0, 1], [0, 1]], "valid": [[0], [1]], "test": [[1], [0]]},
                              num_items=2 ** 45)


def test_split_empty_after_dedup(tmp_path):
    # every valid pair also occurs in train: valid is empty once duplicates are removed
    rows = GOOD[:4] + [(0, 0, 1), (1, 1, 1)] + GOOD[5:]
    with pytest.warns(UserWarning, match="duplicate"):
        with pytest.raises(DataValidationError,
                           match=r"d\.inter: the valid split is empty after removing duplicate "
                                 r"\(user, item\) pairs: all its 2 interaction"):
            read_mmrec(_write(tmp_path, (HEADER + _body(rows)).encode()))
