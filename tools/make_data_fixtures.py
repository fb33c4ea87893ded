#!/usr/bin/env python3
"""Writes the data suite's small files into tests/data/data/ (tests/test_data.c):

  IDX files, hand-made with struct (no NumPy needed), plain and gzipped,
  one per element type, and damaged ones: a bad magic, dims whose product
  overflows 64 bits, trailing bytes, a truncated gzip stream, a gzip stream
  with a corrupted byte, two concatenated gzip members;
  iris.csv, the UCI iris table (150 rows, public domain) as scikit-learn
  ships it (`pip install scikit-learn`), with a header and class names;
  genesis.txt, Genesis 1:1-2:3 of the King James Version (public domain)
  from Debian's bible-kjv (`bible -l79 'gen1:1-2:3'`);
  utf8.txt, a few lines of multilingual UTF-8.

    python3 tools/make_data_fixtures.py

Every value is fixed, so the tests state them literally. gzip output uses
mtime=0, so rerunning the script gives the same bytes.
"""
import gzip
import io
import os
import shutil
import struct
import subprocess

here = os.path.dirname(os.path.abspath(__file__))
out = os.path.join(here, "..", "tests", "data", "data")
os.makedirs(out, exist_ok=True)


def path(name):
    return os.path.join(out, name)


def gz(data):
    b = io.BytesIO()
    with gzip.GzipFile(fileobj=b, mode="wb", mtime=0, filename="") as f:
        f.write(data)
    return b.getvalue()


def write(name, data):
    with open(path(name), "wb") as f:
        f.write(data)


# type byte, struct code (big-endian)
TYPES = {"u8": (0x08, "B"), "i8": (0x09, "b"), "i16": (0x0B, "h"),
         "i32": (0x0C, "i"), "f32": (0x0D, "f"), "f64": (0x0E, "d")}


def idx(kind, dims, values):
    t, code = TYPES[kind]
    head = bytes([0, 0, t, len(dims)]) + b"".join(struct.pack(">I", d) for d in dims)
    return head + struct.pack(">%d%s" % (len(values), code), *values)


# 3 images of 2x3 pixels and their labels, like a tiny MNIST
images = idx("u8", [3, 2, 3], [0, 1, 2, 127, 128, 255,
                               10, 20, 30, 40, 50, 60,
                               255, 254, 253, 3, 2, 1])
labels = idx("u8", [3], [7, 0, 9])
write("tiny-images-idx3-ubyte", images)
write("tiny-images-idx3-ubyte.gz", gz(images))
write("tiny-labels-idx1-ubyte", labels)
write("tiny-labels-idx1-ubyte.gz", gz(labels))

# the other element types
write("i8.idx", idx("i8", [4], [-128, -1, 0, 127]))
write("i16.idx", idx("i16", [2, 2], [-32768, -2, 300, 32767]))
write("i32.idx", idx("i32", [3], [-2147483648, 65536, 2147483647]))
write("f32.idx", idx("f32", [2, 2], [0.5, -1.25, 3.0e10, -0.0]))
write("f64.idx.gz", gz(idx("f64", [3], [0.1, -2.5, 1e300])))

# damage
write("bad-magic.idx", b"\x01\x00" + images[2:])
write("bad-type.idx", b"\x00\x00\x07\x01" + struct.pack(">I", 1) + b"\x00")
write("dims-overflow.idx", bytes([0, 0, 0x08, 4]) + struct.pack(">4I", 0xFFFFFFFF, 0xFFFFFFFF,
                                                               0xFFFFFFFF, 0xFFFFFFFF) + b"\x00" * 16)
write("trailing.idx", labels + b"\x00")
write("truncated.idx", images[:-1])
g = gz(images)
write("truncated.idx.gz", g[: len(g) - 5])  # the trailer cut
bad = bytearray(g)
bad[14] ^= 0xFF  # inside the deflate data
write("corrupt.idx.gz", bytes(bad))
write("two-members.idx.gz", gz(images[:10]) + gz(images[10:]))
write("garbage-after.idx.gz", g + b"junk")

# iris, from scikit-learn's copy of the UCI table
try:
    from sklearn.datasets import load_iris
    iris = load_iris()
    names = ["setosa", "versicolor", "virginica"]
    with open(path("iris.csv"), "w", newline="") as f:
        f.write("sepal_length,sepal_width,petal_length,petal_width,species\n")
        for row, target in zip(iris.data, iris.target):
            f.write(",".join("%g" % v for v in row) + "," + names[target] + "\n")
except ImportError:
    print("scikit-learn is missing: iris.csv not rewritten (pip install scikit-learn)")

# text
if shutil.which("bible"):
    text = subprocess.run(["bible", "-l79", "gen1:1-2:3"], check=True,
                          capture_output=True).stdout
    write("genesis.txt", text)
else:
    print("bible is missing: genesis.txt not rewritten (apt-get install bible-kjv)")
write("utf8.txt", "naïve café\nΚαλημέρα κόσμε\n日本語 🚀\n".encode("utf-8"))
print("wrote", out)
