#!/usr/bin/env python3
"""Writers of the mixed workload (bench/mixed.sh): RATE PATCHes per second in
each organization, of students drawn uniformly from its id range, for DURATION
seconds, as that organization's admin. Prints one JSON line: acked, failed.

    writer.py BASE RATE DURATION TOKENS STUDENTS
"""
import http.client
import json
import random
import sys
import threading
import time
import urllib.parse

base, rate, duration, tokens, ranges = sys.argv[1:6]
rate, duration = float(rate), float(duration)
tokens = tokens.split(",")
ranges = [tuple(int(x) for x in r.split("-")) for r in ranges.split(",")]
url = urllib.parse.urlparse(base)
acked, failed = [0], [0]
lock = threading.Lock()


def org_writer(i):
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
    lo, hi = ranges[i]
    start = time.monotonic()
    n = 0
    while True:
        due = start + n / rate
        now = time.monotonic()
        if due - start >= duration:
            return
        if due > now:
            time.sleep(due - now)
        n += 1
        body = json.dumps({"semester": random.randint(1, 8)})
        try:
            conn.request("PATCH", f"/api/students/{random.randint(lo, hi)}/", body,
                         {"Authorization": f"Bearer {tokens[i]}",
                          "Content-Type": "application/json"})
            r = conn.getresponse()
            r.read()
            ok = r.status == 200
        except OSError:
            conn.close()
            conn = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
            ok = False
        with lock:
            if ok:
                acked[0] += 1
            else:
                failed[0] += 1


if rate > 0:
    threads = [threading.Thread(target=org_writer, args=(i,)) for i in range(len(tokens))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
print(json.dumps({"acked": acked[0], "failed": failed[0]}))
