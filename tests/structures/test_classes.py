"""Class and task names agree with the devkit and BEVDepth."""

from nuscenes.eval.detection.constants import DETECTION_NAMES

from bevkd.structures.classes import CLASS_INDEX, DETECTION_CLASSES, TASK_GROUPS


def test_detection_classes_are_in_devkit_order():
    assert DETECTION_CLASSES == tuple(DETECTION_NAMES)
    assert [CLASS_INDEX[c] for c in DETECTION_CLASSES] == list(range(10))


def test_task_groups_cover_every_class_once():
    flat = [c for group in TASK_GROUPS for c in group]
    assert sorted(flat) == sorted(DETECTION_CLASSES) and len(flat) == 10
