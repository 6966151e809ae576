"""nuScenes detection evaluation: devkit-exact metrics, fast; results export and validation.

- ``metrics``: the ``detection_cvpr_2019`` benchmark (filters, accumulation, AP, TP, NDS);
  ``matching``: the greedy matching kernel; ``config``: the benchmark settings.
- ``groundtruth``: a split's ground truth from the JSON tables; ``tables``: table reading,
  splits, ego poses.
- ``results``: results files -> arrays, validation; ``export``: ``Detections`` -> results.
- ``jsonscan``, ``jsonlex``, ``records``, ``numparse``: the numba JSON scanner behind both.
- ``evaluator``: the training-time hook; ``command``, ``report``, ``plots``, ``devkit``:
  ``bevkd metrics``.

Nothing is imported here, so that ``bevkd metrics`` stays free of torch.
"""
