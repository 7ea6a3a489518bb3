"""Quantizes a float ONNX detector to INT8 with onnxruntime's quantization tools.

Static quantization (QDQ format: int8 weights per channel, uint8 activations), calibrated on
real frames prepared exactly as vitrine prepares them for that decoder, so the activation
ranges are those the model will see. Then point `model.path` of the spec at the output.

    python3 scripts/quantize-model.py --model models/zoo/nanodet-m-416-coco/model.onnx \\
        --decoder nanodet --frames DIR_OF_JPEGS --output model.int8.onnx

DIR_OF_JPEGS: e.g. the sample stream at 1 frame/s:
    ffmpeg -i examples/sample/shopping.mp4 -vf fps=1 -q:v 3 /tmp/calib/%03d.jpg
Needs onnxruntime, onnx, numpy and Pillow from PyPI (scripts/bench.sh installs them into .vitrine/peer).
"""
import argparse, glob, os
import numpy as np
from PIL import Image
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
from onnxruntime.quantization.shape_inference import quant_pre_process
import onnxruntime as ort

p = argparse.ArgumentParser()
p.add_argument("--model", required=True)
p.add_argument("--decoder", required=True, choices=["nanodet", "yolo"])
p.add_argument("--frames", required=True, help="folder of calibration JPEGs")
p.add_argument("--output", required=True)
p.add_argument("--size", type=int, default=0, help="input side (default: the model's)")
args = p.parse_args()

inp = ort.InferenceSession(args.model, providers=["CPUExecutionProvider"]).get_inputs()[0]
size = args.size or (inp.shape[2] if isinstance(inp.shape[2], int) else 640)


def prepare(path):
    img = Image.open(path).convert("RGB")
    if args.decoder == "nanodet":  # stretch, BGR, ImageNet mean/std
        r = np.asarray(img.resize((size, size), Image.BILINEAR), dtype=np.float32)
        x = (r[..., ::-1] - np.array([103.53, 116.28, 123.675])) / np.array([57.375, 57.12, 58.395])
    else:  # yolo: letterbox on grey 114, RGB / 255
        w, h = img.size
        s = min(size / w, size / h)
        cw, ch = round(w * s), round(h * s)
        canvas = Image.new("RGB", (size, size), (114, 114, 114))
        canvas.paste(img.resize((cw, ch), Image.BILINEAR), ((size - cw) // 2, (size - ch) // 2))
        x = np.asarray(canvas, dtype=np.float32) / 255.0
    return np.ascontiguousarray(x.transpose(2, 0, 1)[None].astype(np.float32))


class Frames(CalibrationDataReader):
    def __init__(self):
        paths = sorted(glob.glob(os.path.join(args.frames, "*.jpg")))
        if not paths:
            raise SystemExit(f"no *.jpg in {args.frames}")
        print(f"calibrating on {len(paths)} frames")
        self.items = iter([{inp.name: prepare(p)} for p in paths])

    def get_next(self):
        return next(self.items, None)


pre = args.output + ".pre.onnx"
quant_pre_process(args.model, pre, skip_symbolic_shape=True)
quantize_static(pre, args.output, Frames(), quant_format=QuantFormat.QDQ, per_channel=True,
                activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, op_types_to_quantize=["Conv"])
os.remove(pre)
print(f"wrote {args.output} ({os.path.getsize(args.output) / 1e6:.1f} MB)")
