# From shared/recipes (verified on this machine): run tf2onnx under numpy 2.
# numpy>=2 removed np.product / np.cast etc. that tf2onnx 1.17 still uses
import numpy as np, runpy, sys
if not hasattr(np, "product"): np.product = np.prod
if not hasattr(np, "bool"): np.bool = bool
if not hasattr(np, "object"): np.object = object
sys.argv = ["tf2onnx.convert"] + sys.argv[1:]
runpy.run_module("tf2onnx.convert", run_name="__main__")
