"""pandas HDF5 tables (DeepLabCut's ``CollectedData_*.h5``, prediction ``.h5``) read without running any pickle.

``pandas.read_hdf`` goes through PyTables, which unpickles object arrays and non-NumPy attributes: a crafted
``.h5`` file runs arbitrary code when it is read. This reader opens the file with h5py (which never unpickles),
rebuilds the DataFrame from pandas' documented on-disk layout, and reads the few pickled attributes pandas writes
(column lists, level names) with an unpickler that builds only plain lists, tuples, dicts, strings and numbers and
refuses every global, so no pickle can call anything.

Two layouts are read: ``format="table"`` (what DeepLabCut and ``keyhead convert`` write) and pandas' default
``format="fixed"`` with numeric or string values. Object columns (stored as pickles) are refused.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from keyhead.errors import KeyheadError

_MAX_PICKLE_BYTES = 1 << 20
_REEXPORT = "export it again from DeepLabCut (or save it with DataFrame.to_hdf(..., format='table'))"


class _Refused(pickle.UnpicklingError):
    """A pickle that names a class or function: exactly what a payload needs, and what plain values never do."""


class _PlainUnpickler(pickle.Unpickler):
    """Builds lists, tuples, dicts, sets, strings, bytes, numbers, booleans and None; refuses any class or function."""

    def find_class(self, module: str, name: str) -> Any:
        raise _Refused(f"it names {module[:40]}.{name[:40]}")

    def persistent_load(self, pid: Any) -> Any:
        raise _Refused("it holds a persistent id")


def plain_unpickle(data: bytes) -> Any:
    """Unpickle ``data`` that may only hold plain Python values (no globals, so nothing can be called).

    Raises:
        pickle.UnpicklingError: the data names a class or function, or is too large.
    """
    if len(data) > _MAX_PICKLE_BYTES:
        raise _Refused(f"pickled attribute of {len(data)} bytes")
    return _PlainUnpickler(io.BytesIO(data)).load()


def _attr(node: Any, name: str, path: Path, default: Any = None) -> Any:
    """One attribute as a plain Python value: bytes -> str, PyTables pickles -> plain values, NumPy -> Python."""
    if name not in node.attrs:
        return default
    value = node.attrs[name]
    if isinstance(value, np.ndarray) and value.shape == ():
        value = value[()]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bytes):
        # PyTables stores Python objects it cannot map to HDF5 as pickles (they end with the STOP opcode '.').
        if value.endswith(b"."):
            try:
                return plain_unpickle(value)
            except _Refused as e:
                raise KeyheadError(
                    f"{path}: attribute {name!r} of {node.name} is a pickle that could run code ({e}); {_REEXPORT}"
                ) from None
            except Exception:  # not a pickle: a string that happens to end with '.'
                pass
        return value.decode("utf-8", errors="replace")
    return value


def _strings(values: np.ndarray) -> np.ndarray:
    if values.dtype.kind == "S":
        return np.array([v.decode("utf-8", errors="replace") for v in values.tolist()], dtype=object)
    return values


def _dataset(group: Any, name: str, path: Path) -> Any:
    import h5py

    node = group.get(name)
    if not isinstance(node, h5py.Dataset):
        raise KeyheadError(f"{path}: {group.name}/{name} is missing; {_REEXPORT}")
    if node.dtype.kind == "O" or "PSEUDOATOM" in node.attrs:
        raise KeyheadError(
            f"{path}: {node.name} holds pickled Python objects, which keyhead does not read (a pickle can run "
            f"code); {_REEXPORT}"
        )
    return node


def _fixed_index(group: Any, axis: str, path: Path) -> pd.Index:
    """An axis of pandas' fixed layout: ``<axis>`` (regular) or ``<axis>_level<i>`` / ``<axis>_label<i>`` (multi)."""
    if _attr(group, f"{axis}_variety", path) == "multi":
        nlevels = int(_attr(group, f"{axis}_nlevels", path, 0))
        levels, codes, names = [], [], []
        for i in range(nlevels):
            level = _dataset(group, f"{axis}_level{i}", path)
            levels.append(_strings(level[()]))
            codes.append(_dataset(group, f"{axis}_label{i}", path)[()].astype(np.int64))
            names.append(_attr(level, "name", path))
        return pd.MultiIndex(levels=levels, codes=codes, names=names)
    node = _dataset(group, axis, path)
    return pd.Index(_strings(node[()]), name=_attr(node, "name", path))


def _read_fixed(group: Any, path: Path) -> pd.DataFrame:
    columns = _fixed_index(group, "axis0", path)
    index = _fixed_index(group, "axis1", path)
    frame = pd.DataFrame(index=index, columns=columns, dtype=object)
    for b in range(int(_attr(group, "nblocks", path, 0))):
        items = _fixed_index(group, f"block{b}_items", path)
        node = _dataset(group, f"block{b}_values", path)
        values = _strings(node[()]) if node.ndim == 1 else node[()]
        if values.dtype.kind == "S":
            values = np.vectorize(lambda v: v.decode("utf-8", errors="replace"), otypes=[object])(values)
        if not _attr(node, "transposed", path, 0):
            values = values.T
        if values.shape != (len(index), len(items)):
            raise KeyheadError(f"{path}: {node.name} has shape {values.shape}, expected {(len(index), len(items))}")
        for j, item in enumerate(items):
            frame[item] = values[:, j]
    return frame.infer_objects()


def _read_table(group: Any, path: Path) -> pd.DataFrame:
    table = _dataset(group, "table", path)
    rows = table[()]
    if _attr(group, "data_columns", path, []):
        raise KeyheadError(f"{path}: tables with data_columns are not read; {_REEXPORT}")
    fields = rows.dtype.names or ()
    index_fields = [f for f in fields if not f.startswith("values_block_")]
    if len(index_fields) == 1:
        index = pd.Index(_strings(rows[index_fields[0]]))
    else:
        index = pd.MultiIndex.from_arrays([_strings(rows[f]) for f in index_fields], names=index_fields)
    axes = _attr(group, "non_index_axes", path, [])
    order = [tuple(c) if isinstance(c, list) else c for c in (axes[0][1] if axes else [])]
    data: dict[Any, np.ndarray] = {}
    for field in (f for f in fields if f.startswith("values_block_")):
        kind = _attr(table, f"{field}_kind", path, [])
        values = rows[field].reshape(len(rows), -1)
        if values.dtype.kind == "S":
            values = np.vectorize(lambda v: v.decode("utf-8", errors="replace"), otypes=[object])(values)
        if len(kind) != values.shape[1]:
            raise KeyheadError(f"{path}: {field} names {len(kind)} columns but holds {values.shape[1]}; {_REEXPORT}")
        for j, column in enumerate(kind):
            data[tuple(column) if isinstance(column, list) else column] = values[:, j]
    if not order:
        order = list(data)
    if sorted(map(str, order)) != sorted(map(str, data)):
        raise KeyheadError(f"{path}: the column list does not match the stored values; {_REEXPORT}")
    names = None
    info = _attr(group, "info", path, {})
    if isinstance(info, dict) and isinstance(info.get(1), dict):
        names = info[1].get("names")
    if order and all(isinstance(c, tuple) for c in order):
        columns: pd.Index = pd.MultiIndex.from_tuples(order, names=names)
    else:
        columns = pd.Index(order)
    return pd.DataFrame({c: data[c] for c in order}, index=index).set_axis(columns, axis=1)


def read_pandas_hdf(path: str | Path) -> pd.DataFrame:
    """The one DataFrame in a pandas HDF5 file, read without unpickling anything.

    Raises:
        KeyheadError: not an HDF5 file, no or several pandas tables in it, a layout not read here, or pickled
            Python objects in it.
    """
    import h5py

    path = Path(path)
    try:
        handle = h5py.File(path, "r")
    except OSError as e:
        raise KeyheadError(f"{path}: not a readable HDF5 file ({str(e).splitlines()[0][:120]}); {_REEXPORT}") from None
    with handle:
        groups: list[Any] = []
        handle.visititems(lambda _, node: groups.append(node) if "pandas_type" in node.attrs else None)
        if len(groups) != 1:
            found = "no pandas table" if not groups else f"{len(groups)} pandas tables"
            raise KeyheadError(f"{path}: holds {found}, expected one label table; {_REEXPORT}")
        group = groups[0]
        kind = _attr(group, "pandas_type", path)
        try:
            if kind == "frame_table":
                return _read_table(group, path)
            if kind == "frame":
                return _read_fixed(group, path)
        except KeyheadError:
            raise
        except (OSError, ValueError, TypeError, KeyError, IndexError, AttributeError) as e:
            raise KeyheadError(
                f"{path}: not a readable pandas table ({type(e).__name__}: {str(e)[:120]}); {_REEXPORT}"
            ) from None
        raise KeyheadError(f"{path}: holds a pandas {kind!r}, not a DataFrame; {_REEXPORT}")
