#!/usr/bin/env python3
"""Seed corpus of one fuzz target in OUTDIR: small files from the golden folder where it has them, and
inputs written here for formats it lacks (.ckpt, JPEG, Haar XML, dlib .dat, preferences, a tokenizer
subset). Usage: make-seeds.py TARGET OUTDIR GOLDEN_DIR. Never writes into the source tree."""
import glob, io, json, math, os, struct, sys, zipfile

SEP = b"\n=====\n"  # FUZZ_SEP of fuzz-common.h
target, out, golden = sys.argv[1], sys.argv[2], sys.argv[3]
os.makedirs(out, exist_ok=True)
n = 0


def put(data, name=None):
    global n
    n += 1
    with open(os.path.join(out, name or f"seed-{n:03d}"), "wb") as f:
        f.write(data)


def golden_files(pattern, max_bytes):
    return [p for p in sorted(glob.glob(os.path.join(golden, pattern), recursive=True))
            if os.path.getsize(p) <= max_bytes]


def read(p):
    with open(p, "rb") as f:
        return f.read()


# ---- .ckpt: torch.save's zip layout with a protocol-2 pickle of an OrderedDict of tensors ----
def pickle_state_dict(tensors, wrapped=False):
    """tensors: list of (name, storage_key, storage_type, numel, offset, shape)."""
    p = bytearray(b"\x80\x02")
    memo = [0]

    def s(text):  # BINUNICODE
        b = text.encode()
        p.extend(b"X" + struct.pack("<I", len(b)) + b)

    def i(v):
        p.extend(b"K" + bytes([v]) if 0 <= v < 256 else b"J" + struct.pack("<i", v))

    def glob_(mod, name):
        p.extend(b"c" + mod.encode() + b"\n" + name.encode() + b"\n")

    if wrapped:
        p.extend(b"}")  # EMPTY_DICT
        s("state_dict")
    glob_("collections", "OrderedDict")
    p.extend(b")R")  # EMPTY_TUPLE, REDUCE
    p.extend(b"(")   # MARK for SETITEMS
    for name, key, stype, numel, off, shape in tensors:
        s(name)
        glob_("torch._utils", "_rebuild_tensor_v2")
        p.extend(b"(")  # MARK: args tuple
        p.extend(b"(")  # persistent id tuple
        s("storage")
        glob_("torch", stype)
        s(key)
        s("cpu")
        i(numel)
        p.extend(b"tQ")  # TUPLE, BINPERSID
        i(off)
        p.extend(b"(")
        for d in shape:
            i(d)
        p.extend(b"t(")
        stride = 1
        strides = []
        for d in reversed(shape):
            strides.append(stride)
            stride *= d
        for st in reversed(strides):
            i(st)
        p.extend(b"t")
        p.extend(b"\x89")  # NEWFALSE: requires_grad
        glob_("collections", "OrderedDict")
        p.extend(b")R")
        p.extend(b"tR")  # TUPLE (args), REDUCE
    p.extend(b"u")  # SETITEMS
    if wrapped:
        p.extend(b"s")  # SETITEM into the outer dict
    p.extend(b".")
    return bytes(p)


def ckpt(tensors, storages, wrapped=False, byteorder=b"little", compress=zipfile.ZIP_STORED):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compress) as z:
        z.writestr("archive/data.pkl", pickle_state_dict(tensors, wrapped))
        if byteorder is not None:
            z.writestr("archive/byteorder", byteorder)
        for key, data in storages.items():
            z.writestr(f"archive/data/{key}", data)
    return buf.getvalue()


def f32(vals):
    return struct.pack(f"<{len(vals)}f", *vals)


# ---- JPEG: one 8×8 (or 16×8) baseline block per component, all coefficients zero ----
def tiny_jpeg(width=8, height=8, comps=1):
    def seg(marker, body):
        return bytes([0xFF, marker]) + struct.pack(">H", len(body) + 2) + body
    out = b"\xff\xd8"
    out += seg(0xDB, b"\x00" + bytes([1] * 64))                  # DQT table 0, all ones
    sof = b"\x08" + struct.pack(">HH", height, width) + bytes([comps])
    for c in range(comps):
        sof += bytes([c + 1, 0x11, 0])
    out += seg(0xC0, sof)
    # one-symbol Huffman tables: DC symbol 0 (category 0), AC symbol 0x00 (EOB), each the 1-bit code "0"
    out += seg(0xC4, b"\x00" + bytes([1] + [0] * 15) + b"\x00")
    out += seg(0xC4, b"\x10" + bytes([1] + [0] * 15) + b"\x00")
    sos = bytes([comps])
    for c in range(comps):
        sos += bytes([c + 1, 0x00])
    out += seg(0xDA, sos + b"\x00\x3f\x00")
    blocks = ((width + 7) // 8) * ((height + 7) // 8) * comps
    bits = "00" * blocks
    bits += "1" * (-len(bits) % 8)
    data = bytes(int(bits[k:k + 8], 2) for k in range(0, len(bits), 8))
    return out + data.replace(b"\xff", b"\xff\x00") + b"\xff\xd9"


# ---- dlib shape predictor (dlib's serialize: sign|length byte, then little-endian magnitude) ----
def dl_int(v):
    m = -v if v < 0 else v
    b = bytearray()
    while True:
        b.append(m & 0xFF)
        m >>= 8
        if not m:
            break
    return bytes([len(b) | (0x80 if v < 0 else 0)]) + bytes(b)


def dl_float(f):
    m, e = math.frexp(f)
    return dl_int(int(math.ldexp(m, 24))) + dl_int(e - 24)


def dl_column(vals):
    return dl_int(-len(vals)) + dl_int(-1) + b"".join(dl_float(v) for v in vals)


def tiny_predictor(parts=2, features=2):
    init = [0.25 + 0.5 * (k % 2) if k % 2 == 0 else 0.5 for k in range(2 * parts)]
    b = dl_int(1) + dl_column(init)
    b += dl_int(1) + dl_int(1)                       # stages, trees in stage 0
    b += dl_int(1) + dl_int(0) + dl_int(1) + dl_float(10.0)   # one split: idx1, idx2, threshold
    b += dl_int(2) + dl_column([0.1, 0] * parts) + dl_column([-0.1, 0] * parts)
    b += dl_int(1) + dl_int(features) + b"".join(dl_int(k % parts) for k in range(features))  # anchor_idx
    b += dl_int(1) + dl_int(features) + b"".join(dl_float(0.0) + dl_float(0.0) for _ in range(features))
    return b


HAAR = b"""<?xml version="1.0"?>
<opencv_storage>
<cascade type_id="opencv-cascade-classifier"><stageType>BOOST</stageType>
  <featureType>HAAR</featureType>
  <height>24</height>
  <width>24</width>
  <stageParams><maxWeakCount>2</maxWeakCount></stageParams>
  <featureParams><maxCatCount>0</maxCatCount></featureParams>
  <stageNum>2</stageNum>
  <stages>
    <_>
      <maxWeakCount>2</maxWeakCount>
      <stageThreshold>-0.5</stageThreshold>
      <weakClassifiers>
        <_><internalNodes>0 -1 0 -3.1e-02</internalNodes><leafValues>0.8 -0.5</leafValues></_>
        <_><internalNodes>0 -1 1 1.2e-02</internalNodes><leafValues>-0.4 0.6</leafValues></_></weakClassifiers></_>
    <_>
      <maxWeakCount>1</maxWeakCount>
      <stageThreshold>-1.0</stageThreshold>
      <weakClassifiers>
        <_><internalNodes>1 2 2 5.0e-03 0 -1 0 -2.0e-02</internalNodes><leafValues>0.3 -0.7 0.5</leafValues></_></weakClassifiers></_></stages>
  <features>
    <_><rects><_>6 4 12 9 -1.</_><_>6 7 12 3 3.</_></rects></_>
    <_><rects><_>6 4 12 7 -1.</_><_>10 4 4 7 3.</_></rects></_>
    <_><rects><_>3 9 18 9 -1.</_><_>3 12 18 3 3.</_></rects><tilted>0</tilted></_></features></cascade>
</opencv_storage>
"""

if target == "safetensors":
    for p in golden_files("**/*.safetensors", 8 << 10):
        put(read(p))
elif target == "ckpt":
    w = f32([0.5, -1.0, 2.0, 3.0, float("nan"), 1e30])
    put(ckpt([("w", "0", "FloatStorage", 6, 0, [2, 3])], {"0": w}), "plain.ckpt")
    put(ckpt([("a.weight", "0", "FloatStorage", 6, 2, [2, 2]), ("b", "1", "HalfStorage", 4, 0, [4])],
             {"0": w, "1": struct.pack("<4e", 1, 2, -3, 0.5)}, wrapped=True), "wrapped.ckpt")
    put(ckpt([("i", "k", "LongStorage", 3, 0, [3])], {"k": struct.pack("<3q", 1, -2, 3)}, byteorder=None,
             compress=zipfile.ZIP_DEFLATED), "deflated.ckpt")
elif target == "adapter":
    for d in sorted(glob.glob(os.path.join(golden, "oft_layers", "*", "adapter"))) + \
             [os.path.join(golden, "unet_oft", "adapter")]:
        cfg = os.path.join(d, "adapter_config.json")
        model = os.path.join(d, "adapter_model.safetensors")
        if os.path.exists(cfg) and os.path.exists(model) and os.path.getsize(model) <= 8 << 10:
            put(read(cfg) + SEP + read(model))
elif target == "model-config":
    for p in golden_files("pipeline/*/config.json", 64 << 10):
        put(read(p))
elif target == "scheduler":
    for p in golden_files("pipeline/scheduler/scheduler_config.json", 64 << 10):
        put(read(p))
    put(json.dumps({"num_train_timesteps": 1000, "beta_schedule": "squaredcos_cap_v2",
                    "timestep_spacing": "trailing", "prediction_type": "v_prediction"}).encode())
elif target == "prefs":
    put(json.dumps({"model-folder": "/models/sd15", "adapter-folder": "/adapters", "device": "cpu"}).encode())
    put("{\"model-folder\": \"" .encode() + ("é" * 1500).encode() + b"\"}")
elif target == "tokenizer":
    vocab = json.loads(read(os.path.join(golden, "pipeline", "tokenizer", "vocab.json")))
    merges = read(os.path.join(golden, "pipeline", "tokenizer", "merges.txt")).split(b"\n")
    keep = {k: v for k, v in vocab.items() if v < 400 or k.startswith("<|")}
    # renumber densely: the reader may expect ids 0..n-1
    small = {k: i for i, k in enumerate(sorted(keep, key=lambda k: keep[k]))}
    put(json.dumps(small).encode() + SEP + b"\n".join(merges[:200]) + SEP + b"a photo of an astronaut, 3 cats!")
    put(json.dumps(small).encode() + SEP + b"\n".join(merges[:40]) + SEP + "naïve café 東京 <|endoftext|>".encode())
elif target == "image":
    for p in golden_files("**/*.png", 4 << 10):
        put(read(p))
    put(tiny_jpeg(), "gray.jpg")
    put(tiny_jpeg(16, 8, 3), "rgb.jpg")
elif target == "haar":
    put(HAAR, "tiny.xml")
elif target == "shape-predictor":
    put(tiny_predictor(), "tiny.dat")
    put(tiny_predictor(3, 5), "tiny3.dat")
elif target == "palette":
    for p in golden_files("conditions/data/*palette*.json", 64 << 10):
        put(read(p))
    for p in sorted(glob.glob(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "data",
                                           "*palette*.json"))):
        put(read(p))
else:
    sys.exit(f"make-seeds.py: unknown target {target}")
