"""One run per OUTPUT_DIR: a second run stops at once naming the first; kill -9 leaves no stale lock."""
import os
import signal
import subprocess
import sys
import time

import pytest

from retinadet.utils.run_lock import LOCK_FILE, OutputDirInUseError, lock_output_dir

_HOLD = ("import sys, time; from retinadet.utils.run_lock import lock_output_dir; lock_output_dir(sys.argv[1]); "
         "print('locked', flush=True); time.sleep(60)")


def _holder(output_dir):
    proc = subprocess.Popen([sys.executable, "-c", _HOLD, str(output_dir)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_a_second_run_names_the_first_and_kill_9_frees_the_folder(tmp_path):
    holder = _holder(tmp_path)
    try:
        with pytest.raises(OutputDirInUseError, match=f"OUTPUT_DIR {tmp_path} is in use by another run "
                                                      rf"\(pid {holder.pid}: .*-c"):
            lock_output_dir(str(tmp_path))
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    # The kernel dropped the dead holder's lock: the folder is free, the lock file names the new holder.
    lock_output_dir(str(tmp_path))
    assert open(tmp_path / LOCK_FILE).read().startswith(f"pid {os.getpid()}: ")
    lock_output_dir(str(tmp_path))  # again in the same process: nothing happens


def test_a_forked_child_does_not_hold_the_lock(tmp_path):
    # Data-loader workers are forked from the run: one that outlives a killed run must not keep the
    # folder locked (the lock belongs to the process, not to the open file it shares with children).
    script = ("import os, sys, time; from retinadet.utils.run_lock import lock_output_dir; lock_output_dir(sys.argv[1]); "
              "child = os.fork()\nif child == 0:\n    time.sleep(60)\nelse:\n    print(child, flush=True); time.sleep(60)")
    parent = subprocess.Popen([sys.executable, "-c", script, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    child = int(parent.stdout.readline())
    try:
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        lock_output_dir(str(tmp_path))  # the forked child is alive, but the folder is free
    finally:
        os.kill(child, signal.SIGKILL)


def test_train_net_refuses_a_busy_output_dir_before_writing_anything(tmp_path):
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    holder = _holder(tmp_path)
    try:
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, os.path.join(repo, "tools", "train_net.py"), "--config-file",
                               os.path.join(repo, "configs", "quick", "retinanet_R_18_shapes_tiny.yaml"),
                               "OUTPUT_DIR", str(tmp_path)], capture_output=True, text=True, cwd=repo)
        assert proc.returncode != 0 and time.perf_counter() - start < 60
        assert f"is in use by another run (pid {holder.pid}" in proc.stderr
        assert sorted(os.listdir(tmp_path)) == [LOCK_FILE]  # no log.txt, config.yaml or metrics.json
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
