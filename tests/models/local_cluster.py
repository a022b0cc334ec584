"""A MultiWorkerMirroredStrategy cluster of worker processes on localhost, for tests."""

import json
import os
import socket


def free_ports(n):
    """`n` TCP ports free on 127.0.0.1 at the time of the call."""
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def worker_environments(num_workers):
    """One environment per worker: this process's, plus its TF_CONFIG."""
    cluster = {"worker": [f"127.0.0.1:{p}" for p in free_ports(num_workers)]}
    return [dict(os.environ, TF_CONFIG=json.dumps(
        {"cluster": cluster, "task": {"type": "worker", "index": index}}))
        for index in range(num_workers)]
