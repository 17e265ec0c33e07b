"""Python's executors for the benchmark runner: prints seconds for one run.

usage: py_executor.py submit TASKS WORKERS
  an outside thread submits TASKS no-op callables to ThreadPoolExecutor(WORKERS)
  and waits for every future (the Python counterpart of W2)
"""
import concurrent.futures
import sys
import time


def noop():
    return None


def submit(tasks, workers):
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as ex:
        ex.submit(noop).result()  # start the threads outside the timing
        t0 = time.perf_counter()
        futures = [ex.submit(noop) for _ in range(tasks)]
        concurrent.futures.wait(futures)
        return time.perf_counter() - t0


if __name__ == "__main__":
    if sys.argv[1] == "submit":
        print(f"{submit(int(sys.argv[2]), int(sys.argv[3])):.6f}")
    else:
        sys.exit(f"unknown mode {sys.argv[1]}")
