#!/usr/bin/env python3
"""Convert the EnKG reference's Navier-Stokes test set to the .npy diffinv reads.

The reference implementations (devzhk/enkg-pytorch, devzhk/InverseBench; the paper "Ensemble
Kalman Diffusion Guidance", arXiv 2409.20175) keep the test fields in an LMDB folder
(`../data/navier-stokes-test/Re200.0-t5.0` in their configs, read by
`training.dataset.LMDBData`): key `b"<index>"` (the decimal index), value the raw bytes of one
float32 array of shape (1, 128, 128), the vorticity in physical units. The reference divides
it by 10 when it reads it (`std: 5.0`, normalised by `2 std`); this tool does NOT: it writes
the physical fields, and diffinv applies the same `/ 10` when it hands them to the exported
network.

    python tools/convert_ns_testdata.py --lmdb ../data/navier-stokes-test/Re200.0-t5.0 \\
        --out ns-test.npy [--ids 0-9] [--resolution 128]

Output: `(N, H, W)` float32, C order, the fields in the order of --ids (default: every entry,
0 .. N-1; the paper's table uses the first ten, `id_list: 0-9`). Needs numpy and the `lmdb`
package (the reference's environment has both). Errors are one line on stderr (exit status 1)
and leave --out untouched.
"""
import argparse
import os
import sys
import tempfile


def current_umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


class ConvertError(Exception):
    pass


def parse_ids(text):
    """`0-9`, `0,3,5-7`: the reference's `parse_int_list` syntax."""
    ids = []
    for part in text.split(","):
        part = part.strip()
        try:
            if "-" in part:
                a, b = part.split("-", 1)
                a, b = int(a), int(b)
                if b < a or a < 0:
                    raise ValueError
                ids.extend(range(a, b + 1))
            else:
                v = int(part)
                if v < 0:
                    raise ValueError
                ids.append(v)
        except ValueError:
            raise ConvertError(f"--ids {text!r}: expected indices like 0-9 or 0,3,5-7")
    if not ids:
        raise ConvertError(f"--ids {text!r} names no field")
    return ids


def convert(args):
    import numpy as np

    if args.resolution < 4 or args.channels < 1:
        raise ConvertError("--resolution must be at least 4 and --channels at least 1")
    ids = parse_ids(args.ids) if args.ids is not None else None
    if not os.path.isdir(args.lmdb):
        raise ConvertError(f"--lmdb {args.lmdb}: no such folder (the reference's test set is a folder holding data.mdb)")
    if not os.path.isfile(os.path.join(args.lmdb, "data.mdb")):
        raise ConvertError(f"--lmdb {args.lmdb} has no data.mdb: not an LMDB folder")
    out_dir = os.path.dirname(os.path.abspath(args.out))
    if not os.path.isdir(out_dir):
        raise ConvertError(f"--out {args.out}: the folder {out_dir} does not exist")
    try:
        import lmdb
    except ImportError:
        raise ConvertError("the `lmdb` package is missing: pip install lmdb, or run this with the reference's Python environment")
    c, r = args.channels, args.resolution
    want = c * r * r * 4
    env = lmdb.open(args.lmdb, readonly=True, lock=False, create=False, subdir=True)
    try:
        with env.begin(write=False) as txn:
            entries = txn.stat()["entries"]
            if ids is None:
                ids = list(range(entries))
            if not ids:
                raise ConvertError(f"--lmdb {args.lmdb} is empty")
            fields = np.empty((len(ids), r, r), dtype=np.float32)
            for i, idx in enumerate(ids):
                raw = txn.get(str(idx).encode("utf-8"))
                if raw is None:
                    raise ConvertError(f"--lmdb {args.lmdb} has no entry {idx} (it holds {entries} entries)")
                if len(raw) != want:
                    raise ConvertError(
                        f"entry {idx} has {len(raw)} bytes, not {want} ({c} x {r} x {r} float32); "
                        "pass --resolution/--channels"
                    )
                a = np.frombuffer(raw, dtype=np.float32).reshape(c, r, r)
                if not np.isfinite(a).all():
                    raise ConvertError(f"entry {idx} has a non-finite value")
                fields[i] = a[0]
    finally:
        env.close()
    fd, tmp = tempfile.mkstemp(prefix=".convert-", suffix=".npy", dir=out_dir)
    os.close(fd)
    try:
        np.save(tmp, fields)
        os.chmod(tmp, 0o666 & ~current_umask())
        os.replace(tmp, args.out)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    print(
        f"wrote {args.out}: {fields.shape[0]} fields of {r} x {r} (physical vorticity, min {fields.min():.3g}, "
        f"max {fields.max():.3g}, std {fields.std():.3g})"
    )


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--lmdb", required=True, help="the reference's test-set folder (e.g. navier-stokes-test/Re200.0-t5.0)")
    p.add_argument("--out", required=True, help=".npy file to write, (N, H, W) float32")
    p.add_argument("--ids", default=None, help="indices to keep, e.g. 0-9 (default: every entry)")
    p.add_argument("--resolution", type=int, default=128, help="grid size of the stored fields (128)")
    p.add_argument("--channels", type=int, default=1, help="channels of the stored fields (1; the first is kept)")
    args = p.parse_args(argv)
    try:
        convert(args)
    except ConvertError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
