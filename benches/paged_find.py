"""The reads bench's client row: a full client-paged find with the official client.

python paged_find.py BASE_URL SCRIPT KEY RUNS -> prints JSON {"entities": N, "seconds": [...]}
(one warm-up find first, not timed).
"""
import json
import sys
import time

import shotgun_api3

FIELDS = ["content", "sg_status_list", "entity", "step", "due_date"]


def main():
    url, script, key, runs = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    sg = shotgun_api3.Shotgun(url, script_name=script, api_key=key)
    n = len(sg.find("Task", [], FIELDS))
    seconds = []
    for _ in range(runs):
        t = time.perf_counter()
        n = len(sg.find("Task", [], FIELDS))
        seconds.append(time.perf_counter() - t)
    print(json.dumps({"entities": n, "seconds": seconds}))


if __name__ == "__main__":
    main()
