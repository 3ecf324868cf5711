"""Every artifact of a run, opened the way a user would: pyarrow, Polars and DuckDB, with
no remind-specific code and without reading any remind.* key for shapes or types (issue
#17). Run by tests/open_in_python.rs, which passes a JSON listing of what the Rust reader
found (path, kind, rows, per-row shape, dtype, payload sum; Parquet: columns) as argv[1].
Prints a JSON summary of what was checked; fails with an assertion naming the file."""

import json
import os
import sys
from collections import defaultdict

import duckdb
import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq

# The documented per-row layout of each tensor kind (schemas/*.yaml): dimension names and
# element type, as the arrow.fixed_shape_tensor type carries them.
DOCUMENTED = {
    "features": (["H", "W", "C"], "float32"),
    "codes": (["H", "W", "M"], "uint8"),
    "replay_buffer": (["H", "W", "M"], "uint8"),
    "codebook": (["K", "D"], "float32"),
    "probabilities": (["K"], "float32"),
    "question_features": (["D"], "float32"),
    "word_vectors": (["D"], "float32"),
}
POLARS_TYPE = {"float32": pl.Float32, "uint8": pl.UInt8}

listing = json.load(open(sys.argv[1]))
checked = defaultdict(list)


def check_tensor_file(a):
    path, kind, shape, dtype = a["path"], a["kind"], a["shape"], a["dtype"]
    names, doc_dtype = DOCUMENTED[kind]
    where = f"{path} ({kind})"
    assert dtype == doc_dtype, f"{where}: Rust reader says {dtype}, documented {doc_dtype}"

    # pyarrow: the canonical extension type, recognised as such.
    with pa.memory_map(path) as src:
        reader = pa.ipc.open_file(src)
        ty = reader.schema.field("data").type
        table = reader.read_all()
    assert isinstance(ty, pa.FixedShapeTensorType), f"{where}: data is {ty}"
    assert list(ty.shape) == shape, f"{where}: tensor shape {ty.shape}, expected {shape}"
    assert len(ty.shape) == len(names), f"{where}: {ty.shape} is not {names}"
    assert list(ty.dim_names or []) == names, f"{where}: dim_names {ty.dim_names}"
    assert str(ty.value_type) == {"float32": "float", "uint8": "uint8"}[dtype], (
        f"{where}: value type {ty.value_type}"
    )
    nd = table.column("data").combine_chunks().to_numpy_ndarray()
    assert nd.shape == (a["rows"], *shape), f"{where}: ndarray {nd.shape}"
    assert nd.dtype == np.dtype(dtype), f"{where}: ndarray dtype {nd.dtype}"
    total = float(nd.astype(np.float64).sum())
    assert abs(total - a["sum"]) <= 1e-6 * max(1.0, abs(a["sum"])), (
        f"{where}: payload sum {total}, Rust {a['sum']}"
    )
    ids = table.column("id").to_numpy()
    assert ids.dtype == np.uint64 and (np.diff(ids.astype(np.int64)) > 0).all(), where

    # Polars: the same extension type and shape in its schema, the rows readable.
    df = pl.read_ipc(path)
    pt = df.schema["data"]
    assert isinstance(pt, pl.Extension), f"{where}: Polars sees {pt}"
    assert pt.ext_name() == "arrow.fixed_shape_tensor", f"{where}: Polars sees {pt}"
    assert json.loads(pt.ext_metadata())["shape"] == shape, f"{where}: Polars sees {pt}"
    storage = pt.ext_storage()
    width = int(np.prod(shape))
    assert storage == pl.Array(POLARS_TYPE[dtype], width), f"{where}: Polars storage {storage}"
    assert df.height == a["rows"], f"{where}: Polars reads {df.height} rows"
    assert df["id"].dtype == pl.UInt64

    # DuckDB, through the pyarrow table: the payload as a fixed-size array.
    duck_type = {"float32": "FLOAT", "uint8": "UTINYINT"}[dtype]
    arrow_tab = table
    n, ty_name = duckdb.sql("select count(*), any_value(typeof(data)) from arrow_tab").fetchall()[0]
    assert n == a["rows"], f"{where}: DuckDB counts {n}"
    if n:
        assert ty_name == f"{duck_type}[{width}]", f"{where}: DuckDB sees {ty_name}"
    checked[kind].append(path)


def check_table(a):
    path, kind = a["path"], a["kind"]
    where = f"{path} ({kind})"
    t = pq.read_table(path)
    assert t.num_rows == a["rows"] and t.column_names == a["columns"], (
        f"{where}: pyarrow reads {t.num_rows} rows, {t.column_names}"
    )
    df = pl.read_parquet(path)
    assert df.height == a["rows"] and df.columns == a["columns"], f"{where}: Polars {df.shape}"
    # The remind.* keys where Polars and DuckDB look: the file's key-value metadata.
    meta = pl.read_parquet_metadata(path)
    assert meta.get("remind.kind") == kind, f"{where}: Polars metadata {sorted(meta)}"
    assert json.loads(meta["remind.producer"])["stage"], where
    kv = {
        k.decode(): v.decode()
        for k, v in duckdb.sql(
            f"select key, value from parquet_kv_metadata('{path}')"
        ).fetchall()
    }
    assert kv.get("remind.kind") == kind, f"{where}: DuckDB kv metadata {sorted(kv)}"
    assert kv.get("remind.schema_version"), where
    (n,) = duckdb.sql(f"select count(*) from read_parquet('{path}')").fetchall()[0]
    assert n == a["rows"], f"{where}: DuckDB counts {n}"
    checked[kind].append(path)


def check_folder(folder, members):
    """A folder of artifacts read as one data set, by the tools' own folder readers."""
    names = sorted(n for n in os.listdir(folder) if not n.startswith("."))
    files = [m for m in members if m["path"].startswith(folder + os.sep)]
    rows = sum(m["rows"] for m in files)
    if all(n.endswith(".arrow") for n in names):
        # A tensor dataset (parts of shards, or one file per evaluation point).
        ds = pads.dataset(folder, format="ipc")
        table = ds.to_table()
        assert table.num_rows == rows, f"{folder}: pyarrow.dataset reads {table.num_rows}"
        assert isinstance(table.schema.field("data").type, pa.FixedShapeTensorType), folder
        (n,) = duckdb.sql("select count(*) from ds").fetchall()[0]
        assert n == rows, f"{folder}: DuckDB over the pyarrow dataset counts {n}"
        lazy = pl.scan_ipc(os.path.join(folder, "*.arrow")).select(pl.len()).collect()
        assert lazy.item() == rows, f"{folder}: Polars glob reads {lazy.item()}"
        return "ipc"
    assert all(n.endswith(".parquet") for n in names), f"{folder}: mixed folder {names}"
    if len({tuple(m["columns"]) for m in files}) > 1:
        return None  # tables of different kinds side by side (e.g. questions/): no data set
    (n,) = duckdb.sql(f"select count(*) from read_parquet('{folder}/*.parquet')").fetchall()[0]
    assert n == rows, f"{folder}: DuckDB glob counts {n}"
    lazy = pl.scan_parquet(os.path.join(folder, "*.parquet")).select(pl.len()).collect()
    assert lazy.item() == rows, f"{folder}: Polars glob reads {lazy.item()}"
    return "parquet"


for a in listing:
    (check_tensor_file if a["path"].endswith(".arrow") else check_table)(a)

# Every folder that holds part files holds nothing else (side tables lie beside it), and
# every folder of artifacts of one kind reads as one data set.
folders = defaultdict(list)
for a in listing:
    folders[os.path.dirname(a["path"])].append(a)
datasets = {}
for folder, members in sorted(folders.items()):
    names = [n for n in os.listdir(folder) if not n.startswith(".")]
    if any(n.startswith("part-") for n in names):
        assert all(n.startswith("part-") and n.endswith(".arrow") for n in names), (
            f"{folder}: a dataset folder holds more than its parts: {sorted(names)}"
        )
    if len({m["kind"] for m in members}) == 1 and all(
        os.path.join(folder, n) in {m["path"] for m in members} for n in names
    ):
        how = check_folder(folder, members)
        if how:
            datasets[folder] = how

print(json.dumps({"kinds": {k: len(v) for k, v in checked.items()}, "datasets": datasets}))
