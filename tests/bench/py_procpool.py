"""Python's process pools for the benchmark runner (W8, W9): prints one number.

usage: py_procpool.py pool-map N CHUNK     seconds for multiprocessing.Pool(2).map of
                                           square over range(N); CHUNK 0 = Pool's default
       py_procpool.py ppe-map N CHUNK      the same with ProcessPoolExecutor(2).map
       py_procpool.py rtt N                microseconds per Pool.apply round trip
       py_procpool.py big TASKS SIZE       seconds for ProcessPoolExecutor(2).map over
                                           TASKS payloads of SIZE bytes, each returned
                                           transformed (SIZE bytes back)
"""
import concurrent.futures
import multiprocessing
import sys
import time


def square(x):
    return x * x


def transform(buf):
    # One pass over the payload producing a new payload of the same size, as the C
    # workers do; bytes.translate runs at memory speed.
    return buf.translate(FLIP)


FLIP = bytes((b ^ 0x5A) for b in range(256))


def pool_map(n, chunk):
    with multiprocessing.Pool(2) as pool:
        pool.map(square, range(100))  # start the workers outside the timing
        t0 = time.perf_counter()
        out = pool.map(square, range(n), chunksize=chunk or None)
        t = time.perf_counter() - t0
    assert out[-1] == (n - 1) * (n - 1)
    return t


def ppe_map(n, chunk):
    with concurrent.futures.ProcessPoolExecutor(2) as ex:
        list(ex.map(square, range(100)))
        t0 = time.perf_counter()
        out = list(ex.map(square, range(n), chunksize=chunk or 1))
        t = time.perf_counter() - t0
    assert out[-1] == (n - 1) * (n - 1)
    return t


def rtt(n):
    with multiprocessing.Pool(2) as pool:
        pool.apply(square, (3,))
        t0 = time.perf_counter()
        for i in range(n):
            pool.apply(square, (i,))
        return (time.perf_counter() - t0) / n * 1e6


def big(tasks, size):
    payload = bytes(range(256)) * (size // 256)
    with concurrent.futures.ProcessPoolExecutor(2) as ex:
        list(ex.map(transform, [b"x" * 256]))
        t0 = time.perf_counter()
        done = 0
        for out in ex.map(transform, [payload] * tasks):
            done += len(out)
        t = time.perf_counter() - t0
    assert done == tasks * len(payload)
    return t


if __name__ == "__main__":
    mode = sys.argv[1]
    if mode == "pool-map":
        print(f"{pool_map(int(sys.argv[2]), int(sys.argv[3])):.6f}")
    elif mode == "ppe-map":
        print(f"{ppe_map(int(sys.argv[2]), int(sys.argv[3])):.6f}")
    elif mode == "rtt":
        print(f"{rtt(int(sys.argv[2])):.3f}")
    elif mode == "big":
        print(f"{big(int(sys.argv[2]), int(sys.argv[3])):.6f}")
    else:
        sys.exit(f"unknown mode {mode}")
