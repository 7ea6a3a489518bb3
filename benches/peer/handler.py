"""The peer baseline of `vitrine bench`: the per-frame approach of a serverless design.

A handler gets one JPEG, decodes it with Pillow, resizes it, runs onnxruntime and decodes
the outputs (and NMS) with numpy, then takes the next frame: no batching, no pipelining. A
serverless design runs many such handlers side by side, so `vitrine bench` starts P of them
at once, each with T onnxruntime threads (--threads; 0: onnxruntime's default), at every split
of the cores, and takes the best split as the baseline. Each handler takes its share of the
frames (--shard i --shards P), runs for at least --seconds and prints
{"frames": N, "seconds": S} as JSON.

    python3 benches/peer/handler.py --model M --decoder ssd_postprocessed|yolo|nanodet --frames DIR

Needs onnxruntime, numpy and Pillow (scripts/bench.sh installs them into .vitrine/peer).
"""
import argparse, glob, json, os, time
import numpy as np, onnxruntime as ort
from PIL import Image

p = argparse.ArgumentParser()
p.add_argument("--model", required=True)
p.add_argument("--decoder", required=True, choices=["ssd_postprocessed", "yolo", "nanodet", "detections6"])
p.add_argument("--frames", required=True)
p.add_argument("--seconds", type=float, default=10.0)
p.add_argument("--min-score", type=float, default=0.3)
p.add_argument("--labels")
p.add_argument("--threads", type=int, default=0)
p.add_argument("--shard", type=int, default=0)
p.add_argument("--shards", type=int, default=1)
p.add_argument("--start-at", type=float, default=0.0)
args = p.parse_args()

options = ort.SessionOptions()
if args.threads > 0:
    options.intra_op_num_threads = args.threads
    options.inter_op_num_threads = 1
session = ort.InferenceSession(args.model, sess_options=options, providers=["CPUExecutionProvider"])
inp = session.get_inputs()[0]


def nms(boxes, scores, classes, thr=0.45):
    boxes = boxes + classes[:, None] * 4096.0  # per class
    order = scores.argsort()[::-1]
    keep = []
    while order.size:
        i = order[0]
        keep.append(i)
        xx1 = np.maximum(boxes[i, 0], boxes[order[1:], 0]); yy1 = np.maximum(boxes[i, 1], boxes[order[1:], 1])
        xx2 = np.minimum(boxes[i, 2], boxes[order[1:], 2]); yy2 = np.minimum(boxes[i, 3], boxes[order[1:], 3])
        inter = np.clip(xx2 - xx1, 0, None) * np.clip(yy2 - yy1, 0, None)
        a = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        order = order[1:][inter / (a[i] + a[order[1:]] - inter + 1e-9) <= thr]
    return keep[:100]


def handle(jpeg_path):
    img = Image.open(jpeg_path).convert("RGB")
    if args.decoder == "ssd_postprocessed":
        h, w = inp.shape[1], inp.shape[2]
        x = np.asarray(img.resize((w, h), Image.BILINEAR), dtype=np.uint8)[None]
        boxes, classes, scores, count = session.run(None, {inp.name: x})
        n = int(count[0])
        return [(int(classes[0, i]), float(scores[0, i])) for i in range(n) if scores[0, i] >= args.min_score]
    if args.decoder == "detections6":
        h, w = inp.shape[1], inp.shape[2]
        x = np.asarray(img.resize((w, h), Image.BILINEAR), dtype=np.float32)[None]
        names = [o.name for o in session.get_outputs() if len(o.shape) == 3 and o.shape[2] == 6]
        det = session.run(names, {inp.name: x})[0][0]
        det = det[det[:, 4] >= args.min_score]
        return [(int(det[k, 5]), float(det[k, 4])) for k in nms(det[:, :4], det[:, 4], det[:, 5].astype(int))]
    if args.decoder == "yolo":
        size = 640 if not isinstance(inp.shape[2], int) else inp.shape[2]
        meta = session.get_modelmeta().custom_metadata_map
        if "imgsz" in meta:
            size = int(meta["imgsz"].strip("[]").split(",")[0])
        W, H = img.size
        r = min(size / W, size / H)
        cw, ch = round(W * r), round(H * r)
        canvas = Image.new("RGB", (size, size), (114, 114, 114))
        canvas.paste(img.resize((cw, ch), Image.BILINEAR), ((size - cw) // 2, (size - ch) // 2))
        x = (np.asarray(canvas, dtype=np.float32) / 255.0).transpose(2, 0, 1)[None]
        out = session.run(None, {inp.name: x})[0][0]
        boxes, scores = out[:4].T, out[4:].T
        cls, best = scores.argmax(1), scores.max(1)
        m = best >= args.min_score
        b = boxes[m]
        xyxy = np.stack([b[:, 0] - b[:, 2] / 2, b[:, 1] - b[:, 3] / 2, b[:, 0] + b[:, 2] / 2, b[:, 1] + b[:, 3] / 2], 1)
        return [(int(cls[m][k]), float(best[m][k])) for k in nms(xyxy, best[m], cls[m])]
    # nanodet
    S = inp.shape[2]
    r = np.asarray(img.resize((S, S), Image.BILINEAR), dtype=np.float32)
    x = (r[..., ::-1] - np.array([103.53, 116.28, 123.675])) / np.array([57.375, 57.12, 58.395])
    x = np.ascontiguousarray(x.transpose(2, 0, 1)[None].astype(np.float32))
    outs = session.run(None, {inp.name: x})
    boxes, scores, cls = [], [], []
    for stride in (8, 16, 32):
        side = S // stride
        n = side * side
        c = [o for o in outs if o.shape[1] == n and o.shape[2] == 80][0][0]
        g = [o for o in outs if o.shape[1] == n and o.shape[2] == 44][0][0].reshape(n, 4, 11)
        sc, ci = c.max(1), c.argmax(1)
        m = sc >= args.min_score
        g = g[m]
        pr = np.exp(g - g.max(-1, keepdims=True)); pr /= pr.sum(-1, keepdims=True)
        dist = (pr * np.arange(11)).sum(-1) * stride
        ys, xs = np.divmod(np.arange(n)[m], side)
        cx, cy = xs * stride, ys * stride
        boxes.append(np.stack([cx - dist[:, 0], cy - dist[:, 1], cx + dist[:, 2], cy + dist[:, 3]], 1))
        scores.append(sc[m]); cls.append(ci[m])
    boxes, scores, cls = np.concatenate(boxes), np.concatenate(scores), np.concatenate(cls)
    return [(int(cls[k]), float(scores[k])) for k in nms(boxes, scores, cls)]


frames = sorted(glob.glob(os.path.join(args.frames, "*.jpg")))[args.shard :: args.shards]
handle(frames[0])  # warm-up, as a warm function instance would be
# Handlers side by side start together (--start-at, wall clock) and count the same window.
if args.start_at:
    time.sleep(max(0.0, args.start_at - time.time()))
done, started = 0, time.perf_counter()
while time.perf_counter() - started < args.seconds:
    handle(frames[done % len(frames)])
    done += 1
print(json.dumps({"frames": done, "seconds": time.perf_counter() - started}))
