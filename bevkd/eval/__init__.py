"""nuScenes detection evaluation: fast devkit-exact metrics, results export and validation.

Modules: ``metrics`` (the benchmark), ``tables`` (ground truth from the JSON tables),
``results`` (results files -> arrays, validation), ``export`` (Detections -> results JSON),
``evaluator`` (training-time hook), ``report`` (tables and plots), ``command``
(``bevkd metrics``). Nothing is imported here so that ``bevkd metrics`` stays free of torch.
"""
