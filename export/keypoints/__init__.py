"""kinebridge.export.keypoints: VL-MP's keypoint network — data, training, export, evaluation.

Torch only where it trains and exports: :mod:`.net` (the network), :mod:`.train`, :mod:`.export`.
The rest runs on the robot without torch: :mod:`.data` (rendered training data, the held-out shape
ranges), :mod:`.decode` (maps → objects, eq. 2 back-projection), :mod:`.metrics`, :mod:`.model`
(the exported ONNX file + manifest + session), :mod:`.evaluate` (``kinebridge eval keypoints``).
The shipped model lives in ``models/`` (``mug_kp.onnx`` and its manifest ``mug_kp.json``).
"""
