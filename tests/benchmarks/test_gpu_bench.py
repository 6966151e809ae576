"""benchmarks/gpu_bench.py, the script a GPU lease runs as its one command: it must stop the
bench and every training at its deadline, and hand back only what this call made."""

from __future__ import annotations

import importlib.util
import os
import sys
import tarfile
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def gb():
    spec = importlib.util.spec_from_file_location(
        "gpu_bench", os.path.join(ROOT, "benchmarks", "gpu_bench.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie (killed, not yet reaped by its parent, itself gone) counts as dead
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def _gone(pid: int, within: float = 5.0) -> bool:
    """Whether ``pid`` is dead within ``within`` seconds: a SIGKILL sent to a process group
    takes effect asynchronously, and on a loaded machine the training (a grandchild that
    nothing waits for) may still be running at the instant its group was signalled. Left
    unkilled, it would live 60 s."""
    end = time.monotonic() + within
    while _alive(pid):
        if time.monotonic() > end:
            return False
        time.sleep(0.05)
    return True


def test_the_bench_and_its_trainings_stop_at_the_deadline(gb, tmp_path):
    """A bench that ignores SIGTERM, with a 'training' of its own, both outlive the deadline
    by the grace period at most: the whole process group is killed."""
    pids = tmp_path / "pids"
    code = ("import os, signal, subprocess, sys, time\n"
            "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
            "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
            f"open({str(pids)!r}, 'w').write(f'{{os.getpid()}} {{child.pid}}')\n"
            "print('[bench] start baseline-s0', flush=True)\n"
            "time.sleep(60)\n")
    log = gb.Log(str(tmp_path / "log"))
    events: list = []
    t0 = time.monotonic()
    status = gb.run_until([sys.executable, "-c", code], time.monotonic() + 3.0, dict(os.environ),
                          log, events, grace=1.0)
    assert status == "stopped" and time.monotonic() - t0 < 15
    bench, training = map(int, pids.read_text().split())
    assert not _alive(bench) and _gone(training)
    # the bench's lines are logged and kept with the second they came at
    assert [e[1] for e in events] == ["[bench] start baseline-s0"] and 0 <= events[0][0] < 3
    assert "[bench] start baseline-s0" in (tmp_path / "log").read_text()


def test_a_bench_that_ends_says_how(gb, tmp_path):
    log = gb.Log(str(tmp_path / "log"))
    ok = gb.run_until([sys.executable, "-c", "print('done')"], time.monotonic() + 60,
                      dict(os.environ), log, [])
    bad = gb.run_until([sys.executable, "-c", "raise SystemExit(3)"], time.monotonic() + 60,
                       dict(os.environ), log, [])
    assert (ok, bad) == ("done", "failed (3)")


def _run(archive, name: str, finished: bool = True) -> None:
    run = archive / name
    (run / "eval" / "synth_val").mkdir(parents=True)
    (run / "config.yaml").write_text(name)
    if finished:
        (run / "eval" / "synth_val" / "metrics.json").write_text("{}")


def test_what_a_lease_hands_back_replaces_the_archive_here(gb, tmp_path, monkeypatch):
    lease, here, out = tmp_path / "lease", tmp_path / "here", tmp_path / "out"
    archive, tables, runs = lease / "archive" / "small", lease / "tables", lease / "runs"
    for name in ("teacher", "baseline-s0"):
        _run(archive, name)
    _run(archive, "asd-s0.tmp")  # a copy under way when the bench was stopped
    tables.mkdir(parents=True)
    (tables / "small_map_nds.png").write_bytes(b"old")
    os.utime(tables / "small_map_nds.png", (1, 1))  # the committed plot the tree brought
    since = time.time() - 1
    (tables / "small_per_class.png").write_bytes(b"new")
    (runs / "asd-s0").mkdir(parents=True)
    (runs / "asd-s0" / "train.log").write_text("Traceback: it broke")
    # the backbone's pretraining failed (no backbone.pth.json): the end of its log comes back
    (runs / "backbone.log").write_text("pretrain backbone: CUDA error")
    out.mkdir()
    assert gb.finished_runs(str(archive)) == ["baseline-s0", "teacher"]
    packed = gb.pack(str(out / "small_bench.tgz"), "small", str(archive), str(runs),
                     str(tables), since)
    assert packed == ["benchmarks/archive/small", "benchmarks/small_per_class.png",
                      "gpu_bench_logs/asd-s0.log.tail", "gpu_bench_logs/backbone.log.tail"]
    with tarfile.open(out / "small_bench.tgz") as tar:
        assert not any(".tmp" in m.name for m in tar.getmembers())
    (out / "small.md").write_text("# table")
    # here: an older archive with a run the lease's bench replaced by another
    _run(here / "benchmarks" / "archive" / "small", "old-s0")
    monkeypatch.setattr(gb, "ROOT", str(here))
    done = gb.unpack(str(out), "small", str(tmp_path / "logs"))
    got = sorted(os.listdir(here / "benchmarks" / "archive" / "small"))
    assert got == ["baseline-s0", "teacher"]  # replaced, not merged
    assert (here / "benchmarks" / "small_per_class.png").read_bytes() == b"new"
    assert (here / "benchmarks" / "small.md").read_text() == "# table"
    assert (tmp_path / "logs" / "asd-s0.log.tail").read_text().endswith("it broke")
    assert (tmp_path / "logs" / "backbone.log.tail").read_text().endswith("CUDA error")
    assert not (here / "gpu_bench_logs").exists()  # logs stay out of the checkout
    assert os.path.join("benchmarks", "small.md") in done
